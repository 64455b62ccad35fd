"""Hearth's browser chat: Chainlit handlers only. The work lives in `llm/`."""

import logging
import os

import chainlit as cl
from chainlit.config import config as chainlit_config
from chainlit.server import app as chainlit_server
from chainlit.types import ThreadDict

from llm.heap import settle
from llm.logs import configure_logging
from llm.web import assets, landing, model_switch, reply_view, transfer
from llm.web.auth import configured_access, ensure_auth_secret
from llm.web.chat_session import ChatSession
from llm.web.resume import notice_ids, remember_panel, restore_conversation, show_saved_stats
from llm.web.store import open_data_layer

configure_logging()
log = logging.getLogger("hearth.app")
assets.mount(chainlit_server)  # Hearth's CSS, JS, logos and custom elements (no public/ folder)

# History and login (see llm/web/auth.py): decided once, before Chainlit asks for either.
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
        return access.local_user()  # one user, no login page: see llm/web/auth.py


@cl.on_app_startup
def started() -> None:
    settle()  # see llm/heap.py: a full collection would otherwise stall every chat 40-110 ms


@cl.on_app_shutdown
async def shutdown() -> None:
    """Stopping (Ctrl-C, SIGTERM): every engine writes its chats' caches to disk before it closes."""
    await cl.make_async(model_switch.shutdown)()


@cl.set_chat_profiles
async def chat_profiles(user: cl.User | None) -> list[cl.ChatProfile]:
    return await landing.profiles()  # the landing: Hearth, and which model runs on what


@cl.set_starters
async def starters(user: cl.User | None) -> list[cl.Starter]:
    return await landing.starters()


@cl.on_chat_start
async def start() -> None:
    conversation = await model_switch.start_session()  # loads the model once per process
    cl.user_session.set("conversation", conversation)
    await transfer.offer()


@cl.on_chat_end
async def end() -> None:
    model_switch.end_session()


@cl.on_chat_resume
async def resume(thread: ThreadDict) -> None:
    """A thread reopened from the sidebar or its URL: the same start, then its history and settings."""
    cl.user_session.set("conversation", None)  # what Chainlit restored there is the saved text of it
    cl.user_session.set("notices", notice_ids(thread))
    await start()
    if conversation := cl.user_session.get("conversation"):
        saved = restore_conversation(conversation, thread)
        await model_switch.restore_panel(conversation, saved)  # its model, template and settings
    await show_saved_stats(thread)


@cl.on_settings_update
async def update_settings(values: dict) -> None:
    conversation: ChatSession | None = cl.user_session.get("conversation")
    # A new chain (a new engine if picked); presets applied, saved, renamed or deleted.
    await model_switch.update_panel(conversation, values)
    await remember_panel()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conversation: ChatSession | None = cl.user_session.get("conversation")
    if message.command in (transfer.EXPORT, transfer.IMPORT):
        await transfer.run(message, conversation)
        return
    if conversation is None:
        await cl.ErrorMessage(content="No model is loaded: see the first message of this chat.").send()
        return
    # Chainlit's record of the chat is the truth: it already reflects an edited earlier message.
    await reply_view.answer(conversation, message.content, message)
    await remember_panel()  # the thread exists from the first message on


@cl.action_callback(reply_view.REGENERATE)
async def regenerate(action: cl.Action) -> None:
    if conversation := cl.user_session.get("conversation"):
        await reply_view.regenerate(conversation)


@cl.action_callback(reply_view.START_OVER)
@cl.action_callback(reply_view.TRIM)
async def make_room(action: cl.Action) -> None:
    if conversation := cl.user_session.get("conversation"):
        await reply_view.make_room(conversation, action)
