"""Hearth's browser chat: Chainlit handlers only. The work lives in `llm/`."""

import asyncio
import logging

import chainlit as cl

from llm.conversation import Conversation, shared_engine
from llm.logs import configure_logging
from llm.reply_stats import format_stats
from llm.ui import history_before, settings_from_panel, settings_widgets
from native.errors import EngineBusy, HearthError

configure_logging()
log = logging.getLogger("hearth.app")


@cl.on_chat_start
async def start() -> None:
    try:
        engine = await cl.make_async(shared_engine)()  # loads the model once per process
    except HearthError as exc:
        await cl.ErrorMessage(content=f"The model could not be loaded: {exc}").send()
        return
    conversation = Conversation(engine, session_id=cl.context.session.id)
    cl.user_session.set("conversation", conversation)
    await cl.ChatSettings(settings_widgets(conversation.settings)).send()


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    conversation: Conversation | None = cl.user_session.get("conversation")
    if conversation is None:
        return
    try:
        conversation.apply(settings_from_panel(values))  # a new chain around the same engine
    except ValueError as exc:
        await cl.ErrorMessage(content=str(exc)).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conversation: Conversation | None = cl.user_session.get("conversation")
    if conversation is None:
        await cl.ErrorMessage(content="No model is loaded: see the first message of this chat.").send()
        return
    # Chainlit's record of the chat is the truth: it already reflects an edited earlier message.
    reply = conversation.reply(message.content, history_before(cl.chat_context.get(), message))
    answer = cl.Message(content="")
    try:
        async for text in reply.chunks():
            if conversation.settings.streaming:
                await answer.stream_token(text)
            else:
                answer.content += text
    except asyncio.CancelledError:  # the stop button: keep what was already shown
        if answer.content:
            await answer.send()
        raise
    except EngineBusy:
        await cl.ErrorMessage(
            content="Hearth is busy with other chats right now; send it again in a moment."
        ).send()
        return
    except Exception as exc:  # whatever went wrong, the user reads it in the chat, not in a hung spinner
        log.exception("reply failed")
        await cl.ErrorMessage(content=f"Generation failed: {exc}").send()
        return
    if stats := format_stats(reply.metadata, conversation.engine.n_ctx):
        answer.elements = [cl.Text(name="stats", content=stats, display="inline")]
    await answer.send()
