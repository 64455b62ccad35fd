"""A chat session's model: the first one at start, another picked in the panel (loaded off the event
loop so every other chat keeps going, with "Loading..." and "ready" in the chat), and the panel that
shows them."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import chainlit as cl

from llm.web import presets
from llm.web.chat_session import ChatSession
from llm.web.engine_pool import EnginePool
from llm.web.model_choices import configured_spec, label_of, model_choices
from llm.web.ui import NOTICE, choices_from_panel, panel_widgets, settings_from_panel
from native import save_sessions
from native.errors import HearthError

log = logging.getLogger("hearth.app")


@functools.cache
def engine_pool() -> EnginePool:
    """The app process's pool (created on first use, configured from `HEARTH_UNLOAD_AFTER`)."""
    return EnginePool()


async def start_session() -> ChatSession | None:
    """Load (or share) the configured model for this chat and show the settings panel."""
    session = cl.context.session.id
    spec = configured_spec()
    try:
        engine = await cl.make_async(engine_pool().acquire)(spec, session)
    except HearthError as exc:
        await cl.ErrorMessage(content=f"The model could not be loaded: {exc}").send()
        return None
    # The engine's session is the thread: reopened after a restart, it finds its cache on disk.
    user = cl.context.session.user
    conversation = ChatSession(
        engine,
        session_id=cl.context.session.thread_id,
        model=spec,
        user=user.identifier if user else None,
    )
    await send_panel(conversation)
    return conversation


def shutdown() -> None:
    """The app stops: every engine writes its chats' KV caches to disk (a reopened thread finds its
    cache after a restart)."""
    save_sessions()


def end_session() -> None:
    """The chat's browser went away: its engine may be unloaded once nobody else uses it."""
    engine_pool().release(cl.context.session.id)


async def send_panel(conversation: ChatSession) -> None:
    widgets = panel_widgets(
        conversation.settings,
        model_choices(),
        conversation.model,
        conversation.auto_template(),
        conversation.chat_template,
        conversation.show_prompt,
        conversation.engine.n_ctx,
    )
    # The presets first: a user looking for them need not scroll past every slider.
    await cl.ChatSettings(await presets.preset_widgets() + widgets).send()


async def update_panel(conversation: ChatSession | None, values: dict) -> None:
    """The panel was confirmed: a preset picked, saved, renamed or deleted, then its values in use."""
    panel, changed = await presets.take(values)
    if conversation is not None:
        await apply_panel(conversation, panel)
    await presets.keep(values, panel)
    if conversation is not None and (changed or values.get(presets.SAVE)):
        await send_panel(conversation)  # the preset list, and the values now in use


async def apply_panel(conversation: ChatSession, values: dict) -> None:
    """Validate the panel's values; use them from the next message on, switching model if another
    was picked. A bad value is explained in the chat and changes nothing."""
    try:
        settings, choices = settings_from_panel(values), choices_from_panel(values)
    except ValueError as exc:
        await cl.ErrorMessage(content=str(exc)).send()
        return
    conversation.apply(settings, choices.chat_template)
    conversation.show_prompt = choices.show_prompt
    if choices.model and choices.model != conversation.model:
        await switch_model(conversation, choices.model)


async def switch_model(conversation: ChatSession, spec: str) -> None:
    """Answer with `spec` from the next message on, over the same conversation."""
    label = label_of(spec)
    notice = cl.Message(content=f"Loading {label}…", metadata=NOTICE)
    await notice.send()
    started = time.perf_counter()
    try:
        engine = await cl.make_async(engine_pool().acquire)(spec, cl.context.session.id)
    except HearthError as exc:
        await notice.remove()
        await cl.ErrorMessage(content=f"{label} could not be loaded: {exc}").send()
        await send_panel(conversation)  # the picker goes back to the model still in use
        return
    conversation.switch(engine, spec)
    notice.content = (
        f"{label} ready ({time.perf_counter() - started:.1f} s): "
        "the next reply comes from it, over the same conversation."
    )
    await notice.update()
    await send_panel(conversation)


async def restore_panel(conversation: ChatSession, values: dict[str, Any]) -> None:
    """A reopened thread's saved panel: its template, show-prompt and model (loaded if need be), then
    the panel showing them. Values saved by another version of the panel are left out."""
    if values:
        try:
            choices = choices_from_panel(values)
        except ValueError as exc:
            log.warning("saved panel choices not restored (%s)", exc)
        else:
            conversation.apply(conversation.settings, choices.chat_template)
            conversation.show_prompt = choices.show_prompt
            if choices.model and choices.model != conversation.model:
                await switch_model(conversation, choices.model)  # sends the panel
                return
    await send_panel(conversation)
