"""Both catalog models load and answer; Gemma (no template in its metadata) uses the built-in `gemma`."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from llm import ChatHearth
from native import SamplingParams, load_engine


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    engine = load_engine("gemma-3-270m", models_dir=tmp_path_factory.mktemp("models"))
    yield engine
    engine.close()


def test_default_model_answers_through_its_own_template(engine):
    chat = ChatHearth(engine=engine, temperature=0.0, max_new_tokens=16)
    assert chat.template().name == "gguf"
    reply = chat.invoke([HumanMessage("Hello!")])
    assert reply.content
    assert reply.usage_metadata["output_tokens"] <= 16


def test_gemma_loads_and_answers_with_the_builtin_gemma_template(gemma):
    assert gemma.info.architecture == "gemma3"
    assert gemma.info.chat_template is None
    chat = ChatHearth(engine=gemma, temperature=0.0, max_new_tokens=16)
    assert chat.template().name == "gemma"
    rendered = chat.render([HumanMessage("Hello!")])
    assert rendered.text == "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n"
    assert "<end_of_turn>" in rendered.stop
    reply = chat.invoke([HumanMessage("Hello!")])
    assert reply.content
    assert reply.response_metadata["finish_reason"] in ("stop", "length")


def test_gemma_prefix_reuse_gives_the_same_reply_as_a_cold_start(gemma):
    prompt = "<start_of_turn>user\nTell me a story.<end_of_turn>\n<start_of_turn>model\n"
    params = SamplingParams(temperature=0, max_new_tokens=24)
    cold = gemma.submit(prompt, params).result(120)
    warm = gemma.submit(prompt, params).result(120)
    assert warm.usage.cached_tokens == warm.usage.prompt_tokens - 1
    assert warm.text == cold.text
