"""Export and Import: two buttons beside the message box (Chainlit commands). Export answers with the
chat as Markdown and JSON files; Import asks for a JSON export and puts its messages and settings into
this chat, which must still be empty (a new chat is a new thread), so no other thread is touched.

A press of either button reaches the app as an empty user message naming the command. It is no part of
the conversation: it goes from the chat once its command has answered, and the history database never
keeps it (llm.web.data_layer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import chainlit as cl
from chainlit.config import config
from chainlit.context import local_steps
from chainlit.data import get_data_layer

from llm.web import model_switch
from llm.web.chat_file import (
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
from llm.web.chat_session import ChatSession
from llm.web.presets import panel_values
from llm.web.reply_view import STATS_KEY, STATS_LINE_KEY, stats_element
from llm.web.resume import remember_panel
from llm.web.ui import NOTICE, choices_from_panel, settings_from_panel

EXPORT, IMPORT = "Export", "Import"
COMMANDS = [
    {"id": EXPORT, "icon": "download", "description": "Save this chat as Markdown and JSON", "button": True},
    {"id": IMPORT, "icon": "upload", "description": "Open a chat exported as JSON", "button": True},
]
NO_MODEL = "No model is loaded: see the first message of this chat."
UPLOAD_LIMIT_MB = 20
"""What the browser lets through; Hearth itself refuses anything over chat_file.MAX_BYTES with a reason."""
ROLES = {"user_message": "user", "assistant_message": "assistant"}


async def offer() -> None:
    """Show the Export and Import buttons (on every chat start and resume)."""
    await cl.context.emitter.set_commands(COMMANDS)


def conversation_messages() -> list[cl.Message]:
    """The chat's own messages, without the app's notices, errors and empty command messages (a
    reopened thread's notices and errors come back as plain messages: their ids were noted on resume)."""
    notices = cl.user_session.get("notices") or ()
    return [
        m
        for m in cl.chat_context.get()
        if m.type in ROLES
        and m.content
        and m.id not in notices
        and not isinstance(m, cl.ErrorMessage)
        and not (m.metadata or {}).get("hearth_notice")
    ]


async def run(press: cl.Message, conversation: ChatSession | None) -> None:
    """Carry out the Export or Import command of `press` (the empty message its button sent), then
    take the press out of the chat."""
    try:
        with _at_top_level():
            if press.command == EXPORT:
                await export_chat(conversation)
            elif conversation is not None:
                await import_chat(conversation, press)
            else:
                await cl.ErrorMessage(content=NO_MODEL).send()
    finally:
        await press.remove()


@contextlib.contextmanager
def _at_top_level() -> Iterator[None]:
    """Messages sent meanwhile go to the chat itself. Chainlit would hang them under the step of
    on_message, which hangs under the press: the browser removes a message with everything under it,
    and a reopened thread shows nothing whose parent is gone."""
    outer = local_steps.set([])
    try:
        yield
    finally:
        local_steps.reset(outer)


async def export_chat(conversation: ChatSession | None) -> None:
    messages = conversation_messages()
    if not messages:
        await cl.Message(
            content="There is nothing to export yet: this chat has no messages.", metadata=NOTICE
        ).send()
        return
    session = cl.context.session
    name = next((m.content for m in messages if m.type == "user_message"), "")[:60]
    export = build_export(
        [_exported(m) for m in messages],
        panel_values(session.chat_settings or {}),
        conversation.model if conversation else None,
        ExportedThread(
            id=session.thread_id, name=name, user=session.user.identifier if session.user else None
        ),
    )
    stem = file_stem(name)
    files = [
        cl.File(
            name=f"{stem}.md", content=to_markdown(export).encode(), mime="text/markdown", display="inline"
        ),
        cl.File(
            name=f"{stem}.json", content=to_json(export).encode(), mime="application/json", display="inline"
        ),
    ]
    await cl.Message(
        content=f"This chat ({len(messages)} messages), as Markdown to read and as JSON to import again:",
        metadata=NOTICE,
        elements=files,
    ).send()


def _exported(message: cl.Message) -> ExportedMessage:
    metadata = message.metadata or {}
    return ExportedMessage(
        role=ROLES[message.type],
        content=message.content,
        stats=metadata.get(STATS_KEY),
        stats_line=metadata.get(STATS_LINE_KEY),
    )


async def import_chat(conversation: ChatSession, press: cl.Message) -> None:
    if conversation_messages():
        await cl.ErrorMessage(
            content="Import fills a new chat: start one (the New Chat button) and press Import there. "
            "This chat is left as it is."
        ).send()
        return
    ask = cl.AskFileMessage(
        content="Choose a chat exported from Hearth (its .json file).",
        accept={"application/json": [".json"]},
        max_size_mb=UPLOAD_LIMIT_MB,
        timeout=600,
    )
    # Under the press, not at the top: Chainlit takes an upload only for a question with a parent.
    ask.parent_id = press.id
    files = await ask.send()
    await ask.remove()
    if not files:
        return
    upload = files[0]
    try:
        check_size(upload.size)  # before reading it: the size is all it takes
        export = read_export(Path(upload.path).read_bytes())
        await _check_owner(export.thread.id)
        values = panel_values({"model": export.model, **export.settings} if export.model else export.settings)
        _check_settings(values)
    except ImportRefused as exc:
        await cl.ErrorMessage(content=f"{upload.name} was not imported: {exc}.").send()
        return
    finally:
        Path(upload.path).unlink(missing_ok=True)
    await _restore(conversation, export.messages, values, export.thread.name)


async def _check_owner(thread_id: str | None) -> None:
    """An export of another user's thread is theirs: refused, whoever got hold of the file."""
    layer, user = get_data_layer(), cl.context.session.user
    if not thread_id or layer is None or user is None:
        return
    try:
        author = await layer.get_thread_author(thread_id)
    except ValueError:  # no such thread here (deleted, or exported elsewhere): nobody else's
        return
    if author and author != user.identifier:
        raise ImportRefused("it is an export of another user's chat")


def _check_settings(values: dict) -> None:
    try:
        settings_from_panel(values)
        choices_from_panel(values)
    except ValueError as exc:
        raise ImportRefused(f"its settings are not valid ({exc})") from None


async def _restore(
    conversation: ChatSession, messages: list[ExportedMessage], values: dict, name: str | None
) -> None:
    """Put the export's messages into this chat, as they were, and its settings into the panel."""
    user = cl.context.session.user
    for exported in messages:
        message = cl.Message(
            content=exported.content,
            type=f"{exported.role}_message",  # type: ignore[arg-type]
            author=user.identifier if exported.role == "user" and user else config.ui.name,
        )
        if exported.stats:
            message.metadata = {STATS_KEY: exported.stats, STATS_LINE_KEY: exported.stats_line or ""}
            message.elements = [stats_element(exported.stats_line or "", exported.stats, message.id)]
        await message.send()
    cl.context.session.chat_settings = dict(values)
    await model_switch.apply_panel(conversation, values)
    await model_switch.send_panel(conversation)
    layer = get_data_layer()
    if layer is not None and name:
        await layer.update_thread(cl.context.session.thread_id, name=name)
    await remember_panel()
    await cl.Message(
        content=f"Imported {len(messages)} messages: the next reply continues this conversation.",
        metadata=NOTICE,
    ).send()
