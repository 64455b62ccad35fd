"""A chat thread's KV cache outlives the app: stopped with SIGTERM, started again, the thread reopened
in a real browser (Debian's Chromium), its next reply computes only the new message."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.sync_api import expect
from support.browser import open_stats, shot
from test_app_persistence_browser import chat, new_page, open_chat, running, short_replies, thread_id_of

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")

NOTES = "Remember these notes: " + " ".join(f"item {i} is {'red' if i % 3 else 'blue'}," for i in range(450))


def test_a_reopened_thread_after_a_restart_reuses_its_cache_from_disk(browser, tmp_path):
    data = tmp_path / "data"
    with running(tmp_path / "first.log", data) as first, new_page(browser) as page:
        open_chat(page, first.url)
        short_replies(page)
        chat(page, first, NOTES)
        thread_id = thread_id_of(page)
        _session, prompt, _cached, _completion, _finish = first.usages()[-1]
        assert prompt >= 2000
        first.stop()  # SIGTERM: the app's shutdown writes the thread's cache
    assert "written to disk" in first.log() or list((data / "kv").glob("*.kv"))
    assert len(list((data / "kv").glob("*.kv"))) == 1

    with running(tmp_path / "second.log", data) as second, new_page(browser) as page:
        open_chat(page, second.url)
        page.locator(f"#thread-{thread_id}").click(timeout=30_000)  # reopened from the sidebar
        expect(page).to_have_url(f"{second.url}/thread/{thread_id}")
        expect(page.get_by_text("Remember these notes").first).to_be_visible(timeout=60_000)
        page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)  # on_chat_resume has run
        chat(page, second, "Which item was blue?")
        session, prompt, cached, _completion, _finish = second.usages()[-1]
        assert session == thread_id
        assert cached >= 2000 and prompt - cached < 40  # only the new message was computed
        line = open_stats(page, replies=2).get_by_text(
            re.compile(r"prompt tokens \((\d+) cached from disk\)")
        )
        expect(line).to_be_visible(timeout=30_000)
        shown = int(re.search(r"\((\d+) cached from disk\)", line.inner_text())[1])
        assert shown == cached
        shot(page, "kv01-restored-from-disk")


def test_an_imported_chat_after_a_restart_continues_from_the_disk_tier(browser, tmp_path):
    """A chat exported, the app restarted, the file imported into a new chat: its next reply is
    computed from the exported chat's cache on disk (the model matches), not from scratch."""
    from test_app_features_browser import command, import_file

    data = tmp_path / "data"
    with running(tmp_path / "first.log", data) as first, new_page(browser) as page:
        open_chat(page, first.url)
        short_replies(page)
        chat(page, first, "Name a colour.")
        chat(page, first, "Name another one.")
        _session, earlier, _cached, _completion, _finish = first.usages()[-1]
        command(page, "Export")
        with page.expect_download() as download:
            page.get_by_text("name-a-colour.json").last.click()
        exported = tmp_path / "export.json"
        download.value.save_as(exported)
        first.stop()  # SIGTERM: the app's shutdown writes the chat's cache
    assert list((data / "kv").glob("*.kv"))

    with running(tmp_path / "second.log", data) as second, new_page(browser) as page:
        open_chat(page, second.url)  # a new chat
        import_file(page, exported)
        expect(page.get_by_text("Imported 4 messages")).to_be_visible(timeout=60_000)
        chat(page, second, "And a third?")
        _session, prompt, cached, _completion, _finish = second.usages()[-1]
        assert cached >= earlier, f"{cached} of {prompt} tokens cached; the earlier turns took {earlier}"
        stats = open_stats(page, replies=3)
        line = stats.get_by_text(re.compile(r"prompt tokens \((\d+) cached from disk\)"))
        expect(line).to_be_visible(timeout=30_000)
        assert int(re.search(r"\((\d+) cached from disk\)", line.inner_text())[1]) == cached
        shot(page, "kv02-imported-from-disk")
