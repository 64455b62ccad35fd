"""The remote engine: the engine contract over HTTP, against a second Hearth server and against
llama-cpp-python's own server, and the LangChain classes, the app's conversation and a proxying Hearth
server running on it unchanged."""

from __future__ import annotations

import httpx
import openai
import pytest
from support.rest import hearth_server, llama_cpp_server, local_engine
from support.wait import wait_until

from llm import ChatHearth, HearthLLM
from llm._base import configured_engine
from llm.web.chat_session import ChatSession
from native import RemoteEngine, SamplingParams, load_engine
from native.errors import ContextOverflow, EngineFailed, ModelNotFound

CHAT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = SamplingParams(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def engine():
    return local_engine()


@pytest.fixture(scope="module")
def hearth():
    with hearth_server(
        "--model", "default", "--parallel", "2", "--ctx-size", "512", "--threads", "1"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def remote(hearth):
    engine = load_engine(hearth.url + "/v1")
    yield engine
    engine.close()


def server_stats(server) -> dict:
    return httpx.get(server.url + "/stats", timeout=10).json()["models"]["default"]


def busy_slots(server) -> int:
    return server_stats(server)["slots_in_use"]


# -- against a Hearth server ------------------------------------------------------------------------


def test_load_engine_on_a_url_gives_a_shared_remote_engine(hearth, remote):
    assert isinstance(remote, RemoteEngine)
    assert load_engine(hearth.url + "/v1") is remote
    assert remote.model_name == "default" and remote.n_ctx == 512


def test_remote_greedy_text_and_usage_match_the_local_engine(remote, engine):
    local = engine.submit(CHAT, GREEDY).result(60)
    stream = remote.submit(CHAT, GREEDY)
    deltas = list(stream)
    completion = stream.completion
    assert "".join(deltas) == completion.text == local.text
    assert completion.finish_reason == "length"
    assert completion.usage.prompt_tokens == local.usage.prompt_tokens == len(engine.tokenize(CHAT))
    assert completion.usage.completion_tokens == 12
    assert completion.timings.time_to_first_token > 0 and completion.timings.decode_tokens_per_s > 0


async def test_remote_stream_is_async_iterable(remote, engine):
    text = "".join([d async for d in remote.submit(CHAT, GREEDY)])
    assert text == engine.submit(CHAT, GREEDY).result(60).text


def test_a_session_reuses_its_cache_on_the_server(remote):
    first = remote.submit(CHAT, GREEDY, session="remote-1").result(60)
    again = remote.submit(CHAT + first.text, GREEDY, session="remote-1").result(60)
    assert again.usage.cached_tokens >= first.usage.prompt_tokens


def test_cancelling_a_remote_stream_frees_the_servers_slot(remote, hearth):
    stream = remote.submit("1, 2, 3, 4,", SamplingParams(temperature=0, max_new_tokens=400))
    pieces = iter(stream)
    next(pieces), next(pieces)
    assert busy_slots(hearth) == 1
    stream.cancel()
    assert stream.result(5).finish_reason == "cancelled"
    steps = server_stats(hearth)["steps_total"]
    wait_until(lambda: busy_slots(hearth) == 0, what="the server's slot to free")
    # Left alone, the count runs on to the slot's context (256 positions: some 240 steps, one token
    # each); stopped, the server takes only the steps under way when the connection closed.
    assert server_stats(hearth)["steps_total"] - steps < 50, "the server kept generating"


def test_refusals_are_raised_at_submit_as_the_local_engine_raises_them(hearth, remote):
    with pytest.raises(ContextOverflow):
        remote.submit("word " * 600, GREEDY)
    with pytest.raises(ValueError):
        remote.submit([1, 2, 3], GREEDY)  # token ids mean nothing to another tokenizer
    # More than the server's context leaves for a reply: its 400 context_length_exceeded, raised as the
    # local engine raises it.
    with pytest.raises(ContextOverflow, match="room for 5000 new tokens"):
        remote.submit(CHAT, SamplingParams(temperature=0, max_new_tokens=5000))
    with pytest.raises(ModelNotFound):
        load_engine(hearth.url + "/v1#no-such-model")
    with pytest.raises(EngineFailed, match="cannot reach"):
        load_engine("http://127.0.0.1:9/v1")


def test_langchain_classes_run_unchanged_on_a_url(hearth):
    url = hearth.url + "/v1"
    question = [("system", "Be brief."), ("human", "What is the capital of France?")]
    local_chat = ChatHearth(model="default", temperature=0.0, max_new_tokens=10)
    remote_chat = ChatHearth(model=url, temperature=0.0, max_new_tokens=10)
    expected = local_chat.invoke(question).content
    answer = remote_chat.invoke(question)
    assert answer.content == expected
    assert (
        answer.usage_metadata["output_tokens"] == local_chat.invoke(question).usage_metadata["output_tokens"]
    )
    assert "".join(c.content for c in remote_chat.stream(question)) == expected
    llm = HearthLLM(model=url, temperature=0.0, max_new_tokens=8)
    assert llm.invoke("The capital of France is") == HearthLLM(
        model="default", temperature=0.0, max_new_tokens=8
    ).invoke("The capital of France is")


async def test_the_apps_conversation_runs_on_hearth_model_url(hearth, monkeypatch):
    monkeypatch.setenv("HEARTH_MODEL", hearth.url + "/v1")
    engine = configured_engine()  # what the app loads for HEARTH_MODEL
    assert isinstance(engine, RemoteEngine)
    conversation = ChatSession(engine, session_id="app-over-http")
    tokens = [token async for token in conversation.reply("Say hello.")]
    assert "".join(tokens).strip()


def test_a_hearth_server_can_serve_a_remote_model(hearth):
    """A second server relays to the first: replicas and gateways are the same program."""
    with hearth_server("--model", f"relay={hearth.url}/v1", "--threads", "1") as relay:
        ask = {"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0, "max_tokens": 8}
        direct = openai.OpenAI(base_url=hearth.url + "/v1", api_key="x").chat.completions.create(
            model="default", **ask
        )
        relay_client = openai.OpenAI(base_url=relay.url + "/v1", api_key="x", max_retries=0)
        relayed = relay_client.chat.completions.create(model="relay", **ask)
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        with pytest.raises(openai.BadRequestError) as refused:  # tools need the model's template here
            relay_client.chat.completions.create(model="relay", tools=[tool], **ask)
    assert relayed.choices[0].message.content == direct.choices[0].message.content
    assert relayed.usage.prompt_tokens == direct.usage.prompt_tokens
    assert refused.value.param == "tools" and "needs a local model" in refused.value.message


# -- against llama-cpp-python's server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp(engine):
    with llama_cpp_server(engine.info.path) as server:
        remote = load_engine(server.url + "/v1")
        yield remote
        remote.close()


def test_llama_cpp_server_greedy_text_matches_the_local_engine(llama_cpp, engine):
    completion = llama_cpp.submit(CHAT, GREEDY).result(60)
    assert completion.text == engine.submit(CHAT, GREEDY).result(60).text
    assert completion.finish_reason == "length"
    # It reports no usage while streaming: one token per chunk is the estimate.
    assert completion.usage.completion_tokens == 12


def test_chat_model_runs_on_llama_cpp_server(llama_cpp, engine):
    chat = ChatHearth(engine=llama_cpp, temperature=0.0, max_new_tokens=10)
    answer = chat.invoke([("human", "What is the capital of France?")])
    assert answer.content.strip()
    assert answer.response_metadata["finish_reason"] in ("stop", "length")


def test_cancelling_on_llama_cpp_server_ends_the_stream(llama_cpp):
    stream = llama_cpp.submit("1, 2, 3, 4,", SamplingParams(temperature=0, max_new_tokens=400))
    pieces = iter(stream)
    next(pieces)
    stream.cancel()
    completion = stream.result(5)
    assert completion.finish_reason == "cancelled" and completion.usage.completion_tokens < 400


def test_llama_cpp_server_overflow_fails_the_stream(llama_cpp):
    # llama-cpp-python's server reports it inside the stream, after the 200: it fails on reading.
    with pytest.raises(EngineFailed):
        "".join(llama_cpp.submit("word " * 1500, GREEDY))
