"""The chat's history as the model sees it (llm.web.ui.history_before): Chainlit's record of the chat,
without error messages, notices, or what came after the message being answered."""

from __future__ import annotations

from chainlit.context import init_http_context
from chainlit.message import ErrorMessage, Message
from langchain_core.messages import AIMessage, HumanMessage

from llm.web.ui import NOTICE, history_before


async def test_history_skips_notices_and_starts_where_asked():
    init_http_context()  # Chainlit messages need a context (inside an event loop) to be built
    messages = [
        Message(content="old question", type="user_message"),
        Message(content="old answer"),
        Message(content="Loading gemma…", metadata=NOTICE),
        ErrorMessage(content="it failed"),
        Message(content="new question", type="user_message"),
        Message(content="new answer"),
    ]
    assert history_before(messages, None) == [
        HumanMessage("old question"),
        AIMessage("old answer"),
        HumanMessage("new question"),
        AIMessage("new answer"),
    ]
    assert history_before(messages, None, starts_at=messages[4].id) == [
        HumanMessage("new question"),
        AIMessage("new answer"),
    ]


async def test_resumed_notices_stay_out_of_the_next_prompt():
    init_http_context()  # a Message takes its thread from the current chat
    messages = [
        Message(content="Hi", type="user_message", id="1"),
        Message(content="Generation failed: boom", type="assistant_message", id="2"),
        Message(content="Hello!", type="assistant_message", id="3"),
        Message(content="Next", type="user_message", id="4"),
    ]
    assert history_before(messages, messages[-1], notices={"2"}) == [HumanMessage("Hi"), AIMessage("Hello!")]


async def test_chat_history_comes_from_chainlits_record_without_errors_or_later_messages():
    init_http_context()  # Chainlit messages belong to a session, as they do in the app
    record = [
        Message(content="Hi", type="user_message"),
        Message(content="Hello!", type="assistant_message"),
        ErrorMessage(content="Generation failed: boom"),
        Message(content="Tell me more", type="user_message"),
        Message(content="", type="assistant_message"),
    ]
    current = Message(content="Edited question", type="user_message")
    later = Message(content="an answer to the old question", type="assistant_message")
    history = history_before([*record, current, later], current)
    assert [(m.type, m.content) for m in history] == [
        ("human", "Hi"),
        ("ai", "Hello!"),
        ("human", "Tell me more"),
    ]
