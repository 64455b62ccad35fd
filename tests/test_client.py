"""`llm.client`: Xinference's Chat & Generate examples, sync and async, against a real Hearth server."""

from __future__ import annotations

import pytest
from support.rest import hearth_server

from llm.client import APIError, AsyncClient, Client

# Xinference's examples (004_78c72a89ebf16522.txt), with fewer tokens to keep the suite quick.
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the largest animal?"},
]
CONFIG = {"max_tokens": 16, "temperature": 0.7}


@pytest.fixture(scope="module")
def server():
    with hearth_server(
        "--model", "default", "--parallel", "2", "--ctx-size", "1024", "--threads", "1"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def model(server):
    with Client(server.url) as client:
        yield client.get_model("default")


def test_list_models_maps_uids_to_descriptions(server):
    with Client(server.url + "/v1") as client:  # OpenAI-style URLs work as well as Xinference's
        models = client.list_models()
    assert list(models) == ["default"]
    assert models["default"]["object"] == "model" and models["default"]["context_length"] == 1024


def test_chat_returns_a_chat_completion_with_real_usage(model):
    reply = model.chat(MESSAGES, generate_config=CONFIG)
    assert reply["id"].startswith("chatcmpl-") and reply["object"] == "chat.completion"
    assert reply["model"] == "default" and isinstance(reply["created"], int)
    choice = reply["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 10 and 0 < usage["completion_tokens"] <= 16  # Xinference says -1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_generate_returns_a_text_completion(model):
    reply = model.generate("The largest animal is", generate_config=CONFIG)
    assert reply["id"].startswith("cmpl-") and reply["object"] == "text_completion"
    assert reply["choices"][0]["text"] and reply["usage"]["prompt_tokens"] > 0


def test_streamed_chat_and_generate_yield_chunks_that_add_up(model):
    greedy = {"max_tokens": 10, "temperature": 0}
    whole = model.chat(MESSAGES, generate_config=greedy)["choices"][0]["message"]["content"]
    chunks = list(model.chat(MESSAGES, generate_config={**greedy, "stream": True}))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    text = model.generate("Once upon a time", generate_config=greedy)["choices"][0]["text"]
    pieces = list(model.generate("Once upon a time", generate_config={**greedy, "stream": True}))
    assert "".join(p["choices"][0]["text"] for p in pieces) == text


def test_server_errors_raise_api_error_with_the_status(server, model):
    with Client(server.url) as client, pytest.raises(APIError) as missing:
        client.get_model("llama-2-chat")
    assert missing.value.status_code == 404 and "default" in str(missing.value)
    with pytest.raises(APIError) as bad:
        model.chat(MESSAGES, generate_config={"temperature": 9})
    assert bad.value.status_code == 400 and bad.value.param == "temperature"
    with pytest.raises(APIError) as streamed:  # refused before the stream starts, at the call
        model.generate("word " * 2000, generate_config={"stream": True})
    assert streamed.value.code == "context_length_exceeded"
    assert isinstance(streamed.value, RuntimeError)  # as Xinference's client raises


async def test_async_client_does_the_same(server):
    async with AsyncClient(server.url) as client:
        assert list(await client.list_models()) == ["default"]
        model = await client.get_model("default")
        greedy = {"max_tokens": 8, "temperature": 0}
        whole = await model.chat(MESSAGES, generate_config=greedy)
        stream = await model.chat(MESSAGES, generate_config={**greedy, "stream": True})
        text = "".join([c["choices"][0]["delta"].get("content", "") async for c in stream])
        assert text == whole["choices"][0]["message"]["content"]
        generated = await model.generate("Once upon a time", generate_config=greedy)
        assert generated["usage"]["completion_tokens"] == 8
        with pytest.raises(APIError):
            await client.get_model("nope")
