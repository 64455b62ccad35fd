"""The LangChain face: every call style, the seed's LLMChain, callbacks, and chains that load nothing."""

from __future__ import annotations

import pytest
from langchain_classic.chains import LLMChain
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from pydantic import ValidationError

import llm
from llm import ChatHearth, GenerationSettings, HearthLLM, build_chain
from llm.web.chat_session import ChatSession
from llm.web.reply_stats import format_stats
from native import model_loads
from native.engine import Engine


class TokenRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)


@pytest.fixture(scope="module")
def completion_llm(engine):
    return HearthLLM(model="default", temperature=0.0, max_new_tokens=8)


@pytest.fixture(scope="module")
def chat(engine):
    return ChatHearth(model="default", temperature=0.0, max_new_tokens=16)


def test_public_names_are_pinned():
    assert sorted(llm.__all__) == sorted(
        ["ChatHearth", "EngineConfig", "GenerationSettings", "HearthLLM", "build_chain"]
    )


def test_instances_of_one_model_share_one_engine(engine, completion_llm, chat):
    loads = model_loads()
    other = HearthLLM(model="default", temperature=1.0)
    assert completion_llm.get_engine() is engine
    assert chat.get_engine() is engine
    assert other.get_engine() is engine
    assert model_loads() == loads


def test_llm_invoke_stream_and_batch_return_strings(completion_llm):
    prompt = "The capital of France is"
    text = completion_llm.invoke(prompt)
    assert isinstance(text, str) and text
    assert "".join(completion_llm.stream(prompt)) == text
    assert completion_llm.batch([prompt, prompt]) == [text, text]


async def test_llm_async_calls_return_the_same_strings(completion_llm):
    prompt = "The capital of France is"
    text = completion_llm.invoke(prompt)
    assert await completion_llm.ainvoke(prompt) == text
    assert "".join([c async for c in completion_llm.astream(prompt)]) == text
    assert await completion_llm.abatch([prompt, prompt]) == [text, text]


def test_llm_respects_max_new_tokens_and_reports_finish_reason(completion_llm):
    result = completion_llm.generate(["Once upon a time"])
    info = result.generations[0][0].generation_info
    assert info["finish_reason"] == "length"
    assert info["completion_tokens"] == 8


def test_llm_stop_is_applied(completion_llm):
    full = HearthLLM(model="default", temperature=0.0, max_new_tokens=30).invoke("One, two, three, four,")
    cut = full.split(",")[0]
    assert (
        HearthLLM(model="default", temperature=0.0, max_new_tokens=30).invoke(
            "One, two, three, four,", stop=[","]
        )
        == cut
    )


def test_callbacks_receive_every_token(completion_llm):
    recorder = TokenRecorder()
    text = completion_llm.invoke("Once upon a time", config={"callbacks": [recorder]})
    assert len(recorder.tokens) >= 5
    assert "".join(recorder.tokens) == text


def test_seed_llmchain_as_the_tutorial_uses_it(completion_llm):
    prompt = PromptTemplate(template="Question: {question}\nAnswer:", input_variables=["question"])
    chain = LLMChain(prompt=prompt, llm=completion_llm, verbose=False)
    result = chain.invoke({"question": "Name a color."})
    assert isinstance(result["text"], str) and result["text"]


async def test_seed_llmchain_acall_with_callbacks(completion_llm):
    prompt = PromptTemplate(template="Question: {question}\nAnswer:", input_variables=["question"])
    chain = LLMChain(prompt=prompt, llm=completion_llm)
    recorder = TokenRecorder()
    result = await chain.acall("Name a color.", callbacks=[recorder])
    assert "".join(recorder.tokens) == result["text"]


def test_lcel_pipeline(completion_llm):
    chain = PromptTemplate.from_template("Q: {q}\nA:") | completion_llm | StrOutputParser()
    assert isinstance(chain.invoke({"q": "Why is the sky blue?"}), str)


def test_chat_model_applies_the_models_chat_template(chat):
    rendered = chat.render([HumanMessage("Hello")])
    assert rendered.text.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_end|>" in rendered.stop or chat.get_engine().info.eos_token == "<|im_end|>"


def test_chat_model_call_styles(chat):
    messages = [("system", "Be brief."), ("human", "Say hello.")]
    message = chat.invoke(messages)
    assert isinstance(message, AIMessage) and message.content
    assert message.usage_metadata["output_tokens"] <= 16
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(chunk.content for chunk in chat.stream(messages))
    assert streamed == message.content
    assert [m.content for m in chat.batch([messages, messages])] == [message.content] * 2


async def test_chat_model_async_call_styles(chat):
    messages = [("human", "Say hello.")]
    message = await chat.ainvoke(messages)
    streamed = "".join([chunk.content async for chunk in chat.astream(messages)])
    assert streamed == message.content
    assert [m.content for m in await chat.abatch([messages])] == [message.content]


def test_chat_model_usage_reports_cached_tokens_on_the_next_turn(engine):
    chat = ChatHearth(model="default", temperature=0.0, max_new_tokens=16, session_id="lc-turns")
    history = [HumanMessage("Tell me about cats.")]
    first = chat.invoke(history)
    history += [first, HumanMessage("And dogs?")]
    second = chat.invoke(history)
    cached = second.usage_metadata["input_token_details"]["cache_read"]
    assert cached >= first.usage_metadata["input_tokens"]


def test_system_prompt_setting_reaches_the_prompt(chat):
    custom = ChatHearth(model="default", system_prompt="You are a pirate.")
    rendered = custom.render([HumanMessage("Hi")], custom.system_prompt)
    assert "<|im_start|>system\nYou are a pirate.<|im_end|>" in rendered.text


def test_build_chain_loads_nothing_and_asks_the_engine_nothing(engine):
    # What it costs (microseconds) is bench/settings.py's to measure.
    loads, requests = model_loads(), engine.stats()["requests_total"]
    for _ in range(100):
        chain = build_chain(engine, GenerationSettings(temperature=0.0, max_new_tokens=1))
    assert model_loads() == loads
    assert engine.stats()["requests_total"] == requests
    assert chain.llm.get_engine() is engine


def test_chain_reply_has_the_settings_it_was_built_with(engine):
    chain = build_chain(engine, GenerationSettings(temperature=0.0, max_new_tokens=1))
    result = chain.invoke({"question": "Hello there", "history": []})
    assert len(engine.tokenize(result["text"], add_special=False)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1},
        {"temperature": 2.5},
        {"top_p": 1.5},
        {"top_k": -1},
        {"max_new_tokens": 0},
        {"repetition_penalty": 0},
        {"unknown": 1},
    ],
)
def test_generation_settings_refuse_bad_values(bad):
    with pytest.raises(ValidationError):
        GenerationSettings(**bad)


def test_settings_panel_is_generated_from_the_fields():
    rows = {name: ui for name, ui, _ in GenerationSettings.panel_fields()}
    assert list(rows) == [
        "temperature",
        "repetition_penalty",
        "top_p",
        "top_k",
        "max_new_tokens",
        "streaming",
        "system_prompt",
    ]
    assert (rows["temperature"]["min"], rows["temperature"]["max"], rows["temperature"]["step"]) == (
        0.0,
        2.0,
        0.1,
    )
    assert (rows["top_k"]["min"], rows["top_k"]["max"]) == (0, 100)
    assert rows["max_new_tokens"]["label"] == "Max New Tokens"


def test_chain_passes_the_history_to_the_model(engine):
    chain = build_chain(engine, GenerationSettings(temperature=0.0, max_new_tokens=4))
    inputs = chain.prep_inputs(
        {"question": "And dogs?", "history": [HumanMessage("Cats?"), AIMessage("Meow.")]}
    )
    text = chain.llm.render(chain.prompt.format_prompt(**inputs).to_messages()).text
    assert (
        "user\nCats?<|im_end|>\n<|im_start|>assistant\nMeow.<|im_end|>\n<|im_start|>user\nAnd dogs?" in text
    )


def test_long_history_drops_the_oldest_turns_and_keeps_the_system_prompt(engine):
    small = Engine(engine.info, engine.device, n_ctx=256, parallel=1)
    try:
        chat = ChatHearth(engine=small, temperature=0.0, max_new_tokens=32)
        history = [SystemMessage("Be brief.")]
        for i in range(20):
            history += [
                HumanMessage(f"Question {i} about the weather?"),
                AIMessage(f"Answer {i}: sunny and warm."),
            ]
        history.append(HumanMessage("Last question?"))
        prompt = chat.fit(history, chat._settings(None, {}))
        assert "Be brief." in prompt.text
        assert "Last question?" in prompt.text
        assert "Question 0 " not in prompt.text
        assert "Question 19 " in prompt.text
        assert len(small.tokenize(prompt.text)) + 32 <= 256
        # Whatever survives starts on a user turn right after the system prompt.
        assert prompt.text.split("<|im_start|>")[2].startswith("user")
        assert chat.invoke(history).response_metadata["finish_reason"] in ("stop", "length")
    finally:
        small.close()


async def test_reply_chunks_coalesce_tokens_and_lose_nothing(engine):
    conversation = ChatSession(engine, GenerationSettings(temperature=0.0, max_new_tokens=64))
    tokens = [t async for t in conversation.reply("Tell me about the sea.")]
    reply = conversation.reply("Tell me about the sea.")
    pieces = [p async for p in reply.chunks(interval=0.2)]
    assert "".join(pieces) == "".join(tokens) == reply.result[reply.chain.output_key]
    assert len(pieces) < len(tokens)
    assert reply.metadata["completion_tokens"] == 64


def test_reply_stats_line():
    metadata = {
        "prompt_tokens": 35,
        "cached_tokens": 30,
        "completion_tokens": 64,
        "time_to_first_token": 0.123,
        "decode_tokens_per_s": 118.24,
        "finish_reason": "length",
    }
    assert format_stats(metadata, 4096) == (
        "35 prompt tokens (30 cached) · 64 generated · first token 0.12 s · 118.2 tok/s · context 99/4096 · "
        "stopped at the Max New Tokens limit"
    )
    assert format_stats({}, 4096) == ""
