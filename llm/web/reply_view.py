"""One reply in the Chainlit chat: streamed, with its stats, its prompt on request, a Regenerate button,
and a readable message for every way it can go wrong (never a stack trace)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import chainlit as cl

from llm.chain import StreamedReply
from llm.web.chat_session import ChatSession
from llm.web.reply_stats import context_is_full, format_stats, quiet_line
from llm.web.ui import NOTICE, history_before
from native.errors import ContextOverflow, EngineBusy, EngineFailed

log = logging.getLogger("hearth.app")

REGENERATE = "regenerate"
START_OVER = "start_over"
TRIM = "trim"
STATS_KEY = "hearth_stats"
"""A reply's metadata key for every figure of its stats, " · "-separated (kept since the first version)."""
STATS_LINE_KEY = "hearth_stats_line"
"""... and for its quiet line."""
STATS_ELEMENT = "HearthStats"
"""The custom element that shows them: llm/web/assets/elements/HearthStats.jsx."""
WAIT_NOTICE_AFTER = 0.5  # seconds without a first token before saying why


async def answer(conversation: ChatSession, question: str, before: cl.Message | None) -> None:
    """Answer `question`, asked after the message `before` (None: at the end of the chat)."""
    notices = cl.user_session.get("notices") or ()  # a resumed thread's error notices
    history = history_before(cl.chat_context.get(), before, conversation.starts_at, notices)
    reply = conversation.reply(question, history)
    message = cl.Message(content="")
    waiting = asyncio.ensure_future(_show_waiting(conversation, reply))
    try:
        async for text in reply.chunks():
            waiting.cancel()
            if conversation.settings.streaming:
                await message.stream_token(text)
            else:
                message.content += text
    except asyncio.CancelledError:  # the stop button: keep what was shown, and say what it cost
        await _stop_waiting(waiting)
        await reply.cancelled()
        await _finish(conversation, reply, message)
        raise
    except Exception as exc:  # whatever went wrong, the user reads it in the chat, not a spinner
        await _stop_waiting(waiting)
        await cl.ErrorMessage(content=_explain(exc)).send()
        return
    await _stop_waiting(waiting)
    await _finish(conversation, reply, message)


async def regenerate(conversation: ChatSession) -> None:
    """Ask the last question again: the last answer is replaced by a new one."""
    messages = [m for m in cl.chat_context.get() if not (m.metadata or {}).get("hearth_notice")]
    questions = [i for i, m in enumerate(messages) if m.type == "user_message"]
    if not questions:
        return
    question = messages[questions[-1]]
    for later in messages[questions[-1] + 1 :]:
        await later.remove()
    await answer(conversation, question.content, question)


def _explain(exc: BaseException) -> str:
    if isinstance(exc, EngineBusy):
        return "Hearth is busy with other chats right now; send it again in a moment."
    if isinstance(exc, ContextOverflow):
        return f"This message is too long for the model: it {exc}."
    if isinstance(exc, EngineFailed):
        return f"The model stopped working ({exc}). Pick a model in the settings to load it again."
    log.error("reply failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return f"Generation failed: {exc}"


async def _finish(conversation: ChatSession, reply: StreamedReply, message: cl.Message) -> None:
    """Send the reply with its stats and the Regenerate button; the prompt and a context notice if due."""
    if conversation.show_prompt and reply.submitted is not None:
        await _send_prompt(reply)
    stats = format_stats(reply.metadata, conversation.engine.n_ctx)
    if not message.content and not stats:
        return
    if stats:
        line = quiet_line(reply.metadata)
        message.elements = [stats_element(line, stats, message.id)]
        # Chainlit keeps elements only in a cloud file store: the stats ride in the step's metadata
        # too, so a reopened thread shows them again (llm/web/resume.py).
        message.metadata = {**(message.metadata or {}), STATS_KEY: stats, STATS_LINE_KEY: line}
    await _move_regenerate(message)
    await message.send()
    dropped = reply.submitted.dropped if reply.submitted else 0
    if context_is_full(reply.metadata, conversation.engine.n_ctx) or dropped:
        await _offer_room(dropped)


def stats_element(line: str, stats: str, message_id: str) -> cl.CustomElement:
    """The stats under the reply `message_id`: `line` shown, every figure of `stats` (" · "-separated)
    one click away. The browser keeps whether they are open by the reply's id (see HearthStats.jsx)."""
    details = stats.split(" · ")
    return cl.CustomElement(
        name=STATS_ELEMENT,
        props={"line": line or "stats", "details": details, "reply": message_id},
        display="inline",
    )


async def _move_regenerate(message: cl.Message) -> None:
    """Only the last answer carries the Regenerate button."""
    previous: cl.Message | None = cl.user_session.get("last_answer")
    if previous is not None:
        with contextlib.suppress(Exception):  # it may have been removed with its message
            await previous.remove_actions()
    message.actions = [
        cl.Action(name=REGENERATE, payload={}, label="Regenerate", icon="refresh-cw", tooltip="Ask again")
    ]
    cl.user_session.set("last_answer", message)


async def _send_prompt(reply: StreamedReply) -> None:
    submitted = reply.submitted
    assert submitted is not None
    async with cl.Step(name="prompt", type="llm", show_input=False) as step:
        prompt = submitted.prompt if submitted.prompt is not None else "(rendered by the remote server)"
        step.output = (
            f"Model: {submitted.model_name}\n\n```text\n{prompt}\n```\n\n"
            f"Stop strings: {', '.join(repr(s) for s in submitted.stop) or 'none'}"
        )


async def _offer_room(dropped: int) -> None:
    what = (
        f"The {dropped} oldest messages no longer fit the model's context and were left out."
        if dropped
        else "This chat has filled the model's context."
    )
    await cl.Message(
        content=f"{what} Start over, or keep only the last exchange?",
        metadata=NOTICE,
        actions=[
            cl.Action(name=START_OVER, payload={}, label="Start over", icon="square-pen"),
            cl.Action(name=TRIM, payload={}, label="Keep the last exchange", icon="scissors"),
        ],
    ).send()


async def make_room(conversation: ChatSession, action: cl.Action) -> None:
    """The "Start over" and "Keep the last exchange" buttons: the model forgets earlier messages."""
    messages = [m for m in cl.chat_context.get() if not (m.metadata or {}).get("hearth_notice")]
    questions = [m for m in messages if m.type == "user_message"]
    if action.name == TRIM and questions:
        conversation.starts_at = questions[-1].id
        text = "From now on the model remembers only the last exchange."
    else:
        marker = cl.Message(content="The model has forgotten the messages above.", metadata=NOTICE)
        await marker.send()
        conversation.starts_at = marker.id
        text = ""
    await action.remove()
    if text:
        await cl.Message(content=text, metadata=NOTICE).send()


async def _show_waiting(conversation: ChatSession, reply: StreamedReply) -> None:
    """While no token has come and the request waits for a slot: its place in the queue."""
    notice: cl.Message | None = None
    try:
        while True:
            await asyncio.sleep(WAIT_NOTICE_AFTER)
            place = reply.submitted.stream.queue_position if reply.submitted else None
            if not place:
                continue
            text = (
                f"Every slot of {conversation.engine.model_name} is busy with other chats: "
                f"yours is number {place} in the queue and starts as soon as a slot frees up."
            )
            if notice is None:
                notice = cl.Message(content=text, metadata=NOTICE)
                await notice.send()
            elif notice.content != text:
                notice.content = text
                await notice.update()
    finally:
        if notice is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(notice.remove())


async def _stop_waiting(waiting: asyncio.Future) -> None:
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
