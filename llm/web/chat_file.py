"""A chat thread as a file: JSON (messages, the panel's settings, the model, each reply's stats) to keep
or to import again, and Markdown to read. Reading a JSON export checks everything in it; nothing here
touches Chainlit or the database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT = "hearth-chat"
VERSION = 1
MAX_BYTES = 5 * 1024 * 1024
"""The largest export Hearth imports: a context of 4096 tokens holds about 16 kB of text, so an export
this size would be a chat of some 300 full contexts; anything larger is not an export of Hearth's."""
MAX_MESSAGES = 10_000


class ImportRefused(ValueError):
    """The file is not a Hearth chat export Hearth can import; the message says why."""


class ExportedMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)
    stats: str | None = None
    """Every figure of a reply's stats, " · "-separated."""
    stats_line: str | None = None
    """The reply's quiet stats line."""


class ExportedThread(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    name: str | None = None
    user: str | None = None


class ChatExport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: Literal["hearth-chat"]
    version: Literal[1]
    exported_at: str | None = None
    thread: ExportedThread = ExportedThread()
    model: str | None = None
    """The model the chat used (what the panel's picker held)."""
    settings: dict[str, Any] = {}
    """The settings panel's values: model, chat template, sampling settings, system prompt."""
    messages: list[ExportedMessage] = Field(min_length=1, max_length=MAX_MESSAGES)


def build_export(
    messages: list[ExportedMessage],
    settings: dict[str, Any],
    model: str | None,
    thread: ExportedThread,
) -> ChatExport:
    return ChatExport(
        format=FORMAT,
        version=VERSION,
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
        thread=thread,
        model=model,
        settings=settings,
        messages=messages,
    )


def to_json(export: ChatExport) -> str:
    return export.model_dump_json(indent=2)


def to_markdown(export: ChatExport) -> str:
    """For people: a heading, the model and settings, then each message under its speaker."""
    title = export.thread.name or "Hearth chat"
    lines = [
        f"# {title}",
        "",
        f"Exported from Hearth on {export.exported_at} · model: {export.model or 'unknown'}",
    ]
    system = export.settings.get("system_prompt")
    if system:
        lines += ["", "**System prompt:**", "", _quote(system)]
    shown = {k: v for k, v in export.settings.items() if k != "system_prompt"}
    if shown:
        lines += ["", "**Settings:** " + ", ".join(f"{k} = {v}" for k, v in shown.items())]
    for message in export.messages:
        speaker = "You" if message.role == "user" else "Hearth"
        lines += ["", f"## {speaker}", "", message.content]
        if message.stats:
            lines += ["", f"*{message.stats}*"]
    return "\n".join(lines) + "\n"


def check_size(size: int, max_bytes: int = MAX_BYTES) -> None:
    """Raises ImportRefused for a file too large to be an export (before anyone reads it)."""
    if size > max_bytes:
        raise ImportRefused(
            f"it is {size / 2**20:.1f} MB, and a Hearth chat export is at most {max_bytes / 2**20:.0f} MB"
        )


def read_export(data: bytes, max_bytes: int = MAX_BYTES) -> ChatExport:
    """Parse and check a JSON export. Raises ImportRefused with a readable reason."""
    check_size(len(data), max_bytes)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportRefused(f"it is not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ImportRefused(f'it is not a Hearth chat export (no "format": "{FORMAT}" in it)')
    try:
        return ChatExport.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'file'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise ImportRefused(f"it is not a Hearth chat export Hearth can read ({problems})") from None


def file_stem(name: str | None) -> str:
    """A file name for the export: the thread's name, made safe ('hearth-chat' when there is none)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in (name or "").lower())[:40].strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return cleaned or "hearth-chat"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())
