"""Hearth's browser chat: Chainlit handlers only. The work lives in `llm/`."""

import logging

import chainlit as cl

from llm import model_switch, reply_view
from llm.conversation import Conversation
from llm.logs import configure_logging

configure_logging()
log = logging.getLogger("hearth.app")


@cl.on_chat_start
async def start() -> None:
    conversation = await model_switch.start_session()  # loads the model once per process
    cl.user_session.set("conversation", conversation)


@cl.on_chat_end
async def end() -> None:
    model_switch.end_session()


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    conversation: Conversation | None = cl.user_session.get("conversation")
    if conversation is not None:
        await model_switch.apply_panel(conversation, values)  # a new chain; a new engine if picked


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conversation: Conversation | None = cl.user_session.get("conversation")
    if conversation is None:
        await cl.ErrorMessage(content="No model is loaded: see the first message of this chat.").send()
        return
    # Chainlit's record of the chat is the truth: it already reflects an edited earlier message.
    await reply_view.answer(conversation, message.content, message)


@cl.action_callback(reply_view.REGENERATE)
async def regenerate(action: cl.Action) -> None:
    if conversation := cl.user_session.get("conversation"):
        await reply_view.regenerate(conversation)


@cl.action_callback(reply_view.START_OVER)
@cl.action_callback(reply_view.TRIM)
async def make_room(action: cl.Action) -> None:
    if conversation := cl.user_session.get("conversation"):
        await reply_view.make_room(conversation, action)
