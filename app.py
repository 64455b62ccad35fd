"""Hearth's browser chat: Chainlit handlers only. The work lives in `llm/`."""

import asyncio
import logging
import os

import chainlit as cl
from chainlit.config import config as chainlit_config
from chainlit.types import ThreadDict

from llm.auth import configured_access, ensure_auth_secret
from llm.conversation import Conversation, shared_engine
from llm.logs import configure_logging
from llm.reply_stats import format_stats
from llm.resume import notice_ids, restore_conversation
from llm.store import open_data_layer
from llm.ui import history_before, settings_from_panel, settings_widgets
from native.errors import EngineBusy, HearthError

configure_logging()
log = logging.getLogger("hearth.app")

# History and login (see llm/auth.py): decided once, before Chainlit asks for either.
access = configured_access(host=chainlit_config.run.host)
if access.keeps_history:
    os.environ["CHAINLIT_AUTH_SECRET"] = ensure_auth_secret()


@cl.data_layer
def data_layer():
    return open_data_layer() if access.keeps_history else None


if access.mode == "password":

    @cl.password_auth_callback
    async def login(username: str, password: str) -> cl.User | None:
        return await cl.make_async(access.check_password)(username, password)  # bcrypt takes a while

elif access.mode == "local":

    @cl.header_auth_callback
    async def local_login(headers) -> cl.User:
        return access.local_user()  # one user, no login page: see llm/auth.py


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


@cl.on_chat_resume
async def resume(thread: ThreadDict) -> None:
    """A thread reopened from the sidebar or its URL: the same start, then its history and settings."""
    cl.user_session.set("conversation", None)  # what Chainlit restored there is the saved text of it
    cl.user_session.set("notices", notice_ids(thread))
    await start()
    if conversation := cl.user_session.get("conversation"):
        restore_conversation(conversation, thread)
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
    history = history_before(cl.chat_context.get(), message, cl.user_session.get("notices") or ())
    reply = conversation.reply(message.content, history)
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
