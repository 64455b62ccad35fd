"""The chat's history as the model sees it (llm.web.ui.history_before): Chainlit's record of the chat,
without error messages, notices, or what came after the message being answered."""

from __future__ import annotations

from chainlit.context import init_http_context
from chainlit.message import ErrorMessage, Message
from langchain_core.messages import AIMessage, HumanMessage

from llm.settings import GenerationSettings, reply_limit
from llm.web.model_choices import ModelChoice
from llm.web.ui import NOTICE, history_before, panel_widgets


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


def test_max_new_tokens_slider_ends_where_the_models_context_does(engine):
    # No fixed cap (it was 1024): the loaded model's context, less the one token a prompt holds.
    def slider(n_ctx, settings=None):
        settings, models = settings or GenerationSettings(), [ModelChoice("default", "default")]
        widgets = panel_widgets(settings, models, "default", "gguf", None, False, n_ctx)
        return next(w for w in widgets if w.id == "max_new_tokens")

    assert slider(engine.n_ctx).max == engine.n_ctx - 1 == reply_limit(engine.n_ctx)
    assert slider(8192).max == 8191 and slider(8192).min == 1
    assert slider(None).max == reply_limit(None) == 4095  # a server that does not say its context
    # A value chosen on a model with a longer context starts at this one's end.
    assert slider(512, GenerationSettings(max_new_tokens=3000)).initial == 511
    assert GenerationSettings(max_new_tokens=3000).max_new_tokens == 3000
