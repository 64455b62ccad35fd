"""A chat as a file (llm.web.chat_file): JSON that reads back as it was written, Markdown to read, and
files that are not Hearth exports refused with the reason."""

from __future__ import annotations

import json

import pytest

from llm.web.chat_file import (
    MAX_BYTES,
    ExportedMessage,
    ExportedThread,
    ImportRefused,
    build_export,
    check_size,
    file_stem,
    read_export,
    to_json,
    to_markdown,
)

SETTINGS = {"model": "default", "chat_template": "auto", "temperature": 0.3, "system_prompt": "Be brief."}


def export():
    messages = [
        ExportedMessage(role="user", content="My cat is called Whiskers."),
        ExportedMessage(
            role="assistant",
            content="What a nice name!",
            stats="12 prompt tokens (0 cached) · 5 generated",
            stats_line="80 tok/s · 0.10 s to first token · 0 of 12 cached",
        ),
    ]
    return build_export(messages, SETTINGS, "default", ExportedThread(id="t-1", name="Cats", user="alice"))


def test_json_reads_back_as_it_was_written():
    written = export()
    read = read_export(to_json(written).encode())
    assert read == written
    assert read.messages[1].stats_line.startswith("80 tok/s")
    assert read.settings == SETTINGS and read.model == "default" and read.thread.user == "alice"


def test_markdown_has_the_settings_and_every_message_under_its_speaker():
    text = to_markdown(export())
    assert text.startswith("# Cats\n")
    assert "> Be brief." in text and "temperature = 0.3" in text
    assert text.index("## You\n\nMy cat is called Whiskers.") < text.index("## Hearth\n\nWhat a nice name!")
    assert "*12 prompt tokens (0 cached) · 5 generated*" in text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "it is not JSON"),
        (b"\xff\xfe", "it is not JSON"),
        (b"[1, 2]", "it is not a Hearth chat export"),
        (json.dumps({"messages": []}).encode(), 'no "format": "hearth-chat"'),
        (json.dumps({"format": "hearth-chat", "version": 1, "messages": []}).encode(), "messages"),
        (
            json.dumps(
                {"format": "hearth-chat", "version": 1, "messages": [{"role": "system", "content": "x"}]}
            ).encode(),
            "messages.0.role",
        ),
        (json.dumps({"format": "hearth-chat", "version": 9, "messages": []}).encode(), "version"),
    ],
)
def test_what_is_not_an_export_is_refused_with_the_reason(data, reason):
    with pytest.raises(ImportRefused, match=reason.replace(".", r"\.")):
        read_export(data)


def test_a_file_over_the_limit_is_refused_by_its_size():
    with pytest.raises(ImportRefused, match=r"it is 10\.0 MB, and a Hearth chat export is at most 5 MB"):
        check_size(10 * 2**20)
    with pytest.raises(ImportRefused, match="at most 5 MB"):
        read_export(b" " * (MAX_BYTES + 1))
    check_size(MAX_BYTES)


def test_file_names_come_from_the_thread_name():
    assert file_stem("My cat is called Whiskers.") == "my-cat-is-called-whiskers"
    assert file_stem("../../etc/passwd") == "etc-passwd"
    assert file_stem("") == file_stem(None) == "hearth-chat"
