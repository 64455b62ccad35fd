"""Reopening a saved thread: its conversation and settings, as Chainlit hands them to `on_chat_resume`."""

from __future__ import annotations

import json
import logging
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer
from chainlit.types import ThreadDict
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from llm.web.chat_session import ChatSession
from llm.web.reply_view import STATS_KEY, STATS_LINE_KEY, stats_element
from llm.web.ui import settings_from_panel

log = logging.getLogger("hearth.resume")

_ROLES = {"user_message": HumanMessage, "assistant_message": AIMessage}


def notice_ids(thread: ThreadDict) -> set[str]:
    """Ids of the thread's error notices and the app's own notices ("Loading ..."). Chainlit gives them
    back as plain messages on resume, but they were never part of the conversation."""
    return {step["id"] for step in thread.get("steps", []) if step.get("isError") or _is_notice(step)}


def _is_notice(step: dict) -> bool:
    return bool(_metadata(step).get("hearth_notice"))


def _metadata(step: dict) -> dict[str, Any]:
    metadata = step.get("metadata") or {}
    return json.loads(metadata) if isinstance(metadata, str) else metadata


def saved_stats(thread: ThreadDict) -> dict[str, str]:
    """Each reply's stats line, by step id (kept in the step's metadata when the reply was sent)."""
    return {
        step["id"]: stats for step in thread.get("steps", []) if (stats := _metadata(step).get(STATS_KEY))
    }


def saved_stats_lines(thread: ThreadDict) -> dict[str, str]:
    """Each reply's quiet stats line, by step id (replies saved before there was one have none)."""
    return {
        step["id"]: line for step in thread.get("steps", []) if (line := _metadata(step).get(STATS_LINE_KEY))
    }


async def show_saved_stats(thread: ThreadDict) -> None:
    """Put each reopened reply's stats back under it, as they were shown when it was generated.

    Call it from on_chat_resume: Chainlit sends the thread to the browser only after that handler, and
    the browser then replaces the chat's elements with the thread's, so the stats join the thread
    (an element sent on its own would be wiped)."""
    elements = thread.setdefault("elements", [])  # type: ignore[typeddict-item]
    lines = saved_stats_lines(thread)
    for step_id, stats in saved_stats(thread).items():
        # The figures travel in the element's props: the browser needs no file for them.
        element = stats_element(lines.get(step_id, ""), stats, step_id)
        element.for_id = step_id
        elements.append(element.to_dict())


def history_from_thread(thread: ThreadDict) -> list[BaseMessage]:
    """The thread's exchanges, oldest first, as LangChain messages (without error notices and empty steps)."""
    hidden = notice_ids(thread)
    history: list[BaseMessage] = []
    for step in thread.get("steps", []):
        role = _ROLES.get(step.get("type", ""))
        if role is not None and step.get("output") and step["id"] not in hidden:
            history.append(role(step["output"]))
    return history


def saved_panel_values(thread: ThreadDict) -> dict[str, Any]:
    """The settings panel's values when the thread was last used (empty if none were saved)."""
    metadata = thread.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    return metadata.get("chat_settings") or {}


def restore_conversation(conversation: ChatSession, thread: ThreadDict) -> dict[str, Any]:
    """Give `conversation` the thread's history and, when they are still valid, its saved settings;
    return the saved panel values (the model and template among them) for the panel."""
    conversation.history = history_from_thread(thread)
    values = saved_panel_values(thread)
    if values:
        try:
            conversation.apply(settings_from_panel(values), conversation.chat_template)
        except ValueError as exc:  # saved by another version of the panel: keep the defaults
            log.warning("thread %s: saved settings not restored (%s)", thread.get("id"), exc)
            return {}
    return values


async def remember_panel() -> None:
    """Save the chat's panel values with its thread now. Chainlit saves them only when the browser
    disconnects, which a crash (kill -9, a power cut) never does: the reopened thread would come back
    with the default settings."""
    layer, session = get_data_layer(), cl.context.session
    if layer is None or not session.chat_settings or not cl.chat_context.get():
        return  # nothing is kept, or there is no thread yet (Chainlit stores it with the first message)
    values = dict(session.chat_settings)
    if cl.user_session.get("saved_panel") == values:
        return  # called after every reply: write only what changed
    await layer.update_thread(session.thread_id, metadata={"chat_settings": values})
    cl.user_session.set("saved_panel", values)
