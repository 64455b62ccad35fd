"""The REST server through real clients: the official `openai` client, `requests` with MLC's examples,
and langchain-openai's ChatOpenAI, against `python -m llm.rest` serving the default model."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from support.rest import hearth_server, local_engine, sse_events
from support.wait import wait_until

from llm import ChatHearth, HearthLLM

MESSAGES = [{"role": "user", "content": "Write a haiku about the sea."}]
COUNTING = "1, 2, 3, 4,"  # greedy and unpenalised, the model counts on for as long as it is let
ENDLESS = {"temperature": 0, "repetition_penalty": 1.0, "max_tokens": 1000}
PARALLEL = 4
CTX = 1024


@pytest.fixture(scope="module", autouse=True)
def engine():
    """Loaded before the tests' ChatHearth and HearthLLM references, which share it."""
    return local_engine()


@pytest.fixture(scope="module")
def server():
    # Two UIDs for one file: MLC's example payload names "vicuna-v1-7b"; both share one engine.
    flags = ["--model", "default", "--model", "vicuna-v1-7b=default", "--parallel", str(PARALLEL)]
    # One thread: llama.cpp's threads spin-wait on each other, which crawls on a busy shared machine.
    with hearth_server(*flags, "--ctx-size", str(CTX), "--threads", "1") as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def stats(server, model: str = "default") -> dict:
    return requests.get(server.url + "/stats", timeout=10).json()["models"][model]


def wait_for_idle(server) -> None:
    wait_until(lambda: stats(server)["slots_in_use"] == 0, what="every slot free")


def steps_after_leaving(server) -> int:
    """Steps the server takes, once the client has left, until every slot is free. Left alone, an
    ENDLESS count runs on to its slot's context (CTX / PARALLEL = 256 positions, one step a token)."""
    steps = stats(server)["steps_total"]
    wait_for_idle(server)
    return stats(server)["steps_total"] - steps


# -- the openai client ------------------------------------------------------------------------------


def test_chat_reply_is_the_chat_models_greedy_reply_with_real_usage(client):
    local = ChatHearth(model="default", temperature=0.0, max_new_tokens=12)
    reply = client.chat.completions.create(model="default", messages=MESSAGES, temperature=0, max_tokens=12)
    assert reply.object == "chat.completion" and reply.model == "default"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == local.invoke([("human", MESSAGES[0]["content"])]).content
    assert reply.choices[0].finish_reason == "length"
    rendered = local.render([HumanMessage(MESSAGES[0]["content"])])
    assert reply.usage.prompt_tokens == len(local.get_engine().tokenize(rendered.text))
    assert reply.usage.completion_tokens == 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_streamed_chat_adds_up_to_the_reply_and_ends_with_usage(client):
    whole = client.chat.completions.create(model="default", messages=MESSAGES, temperature=0, max_tokens=10)
    chunks = list(
        client.chat.completions.create(
            model="default",
            messages=MESSAGES,
            temperature=0,
            max_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_fast_tokens_are_sent_together_at_most_every_stream_interval(client):
    """The server's default --stream-interval-ms (50): tokens that come faster share an event."""
    # Unpenalised, as COUNTING needs: under the server's default penalty (1.1) the count may stop early.
    unpenalised = {"max_tokens": 48, "temperature": 0, "extra_body": {"repetition_penalty": 1.0}}
    whole = client.completions.create(model="default", prompt=COUNTING, **unpenalised)
    started = time.monotonic()
    chunks = list(client.completions.create(model="default", prompt=COUNTING, stream=True, **unpenalised))
    elapsed = time.monotonic() - started
    texts = [c.choices[0].text for c in chunks if c.choices[0].text]
    assert "".join(texts) == whole.choices[0].text
    assert whole.usage.completion_tokens == 48
    # One event at once, then one per 50 ms pause, the last of which the end may cut short; tokens
    # come faster than one per 50 ms, so events hold several.
    assert 2 <= len(texts) <= elapsed / 0.05 + 2
    assert len(texts) < 48


def test_text_completion_streamed_and_not_is_the_llms_greedy_continuation(client):
    expected = HearthLLM(model="default", temperature=0.0, max_new_tokens=8).invoke(
        "The capital of France is"
    )
    whole = client.completions.create(
        model="default", prompt="The capital of France is", temperature=0, max_tokens=8
    )
    stream = client.completions.create(
        model="default", prompt="The capital of France is", temperature=0, max_tokens=8, stream=True
    )
    assert whole.object == "text_completion"
    assert whole.choices[0].text == expected
    assert "".join(c.choices[0].text for c in stream) == expected
    assert whole.usage.completion_tokens == 8


def test_n_choices_are_indexed_seeded_and_reproducible_when_streamed(client):
    ask = {"model": "default", "messages": MESSAGES, "temperature": 1.0, "seed": 11, "max_tokens": 8, "n": 3}
    whole = client.chat.completions.create(**ask)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert len({c.message.content for c in whole.choices}) > 1  # seed + i: the choices differ
    single = client.chat.completions.create(**{**ask, "n": 1})
    assert whole.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert 3 <= whole.usage.completion_tokens <= 3 * 8
    streamed = {0: "", 1: "", 2: ""}
    for chunk in client.chat.completions.create(**ask, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert [streamed[i] for i in range(3)] == [c.message.content for c in whole.choices]


def test_seed_makes_sampling_reproducible(client):
    def sample(seed: int) -> str:
        reply = client.completions.create(
            model="default", prompt="Once upon a time", temperature=1.5, seed=seed, max_tokens=24
        )
        return reply.choices[0].text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_stop_string_ends_the_reply_before_it(client):
    full = client.completions.create(model="default", prompt=COUNTING, temperature=0, max_tokens=12)
    assert " 7," in full.choices[0].text
    cut = client.completions.create(
        model="default", prompt=COUNTING, temperature=0, max_tokens=12, stop=[" 7"]
    )
    assert cut.choices[0].text == full.choices[0].text.split(" 7")[0]
    assert cut.choices[0].finish_reason == "stop"


def test_response_format_constrains_the_reply_to_json(client):
    def ask(question: str, response_format: dict) -> str:
        reply = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=40,
            response_format=response_format,
        )
        assert reply.choices[0].finish_reason == "stop"
        return reply.choices[0].message.content

    assert json.loads(ask('Reply with JSON: {"ok": true}', {"type": "json_object"})) == {"ok": True}
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    shaped = ask(
        "How old is the sun?", {"type": "json_schema", "json_schema": {"name": "age", "schema": schema}}
    )
    assert set(json.loads(shaped)) == {"age"} and isinstance(json.loads(shaped)["age"], int)


def test_a_session_keeps_its_cache_until_reset(client, server):
    first_messages = [{"role": "user", "content": "Name a colour of the rainbow, session test."}]
    first = client.chat.completions.create(
        model="default",
        messages=first_messages,
        temperature=0,
        max_tokens=6,
        extra_body={"session_id": "s-1"},
    )
    follow = [
        *first_messages,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Another one?"},
    ]
    second = client.chat.completions.create(
        model="default", messages=follow, temperature=0, max_tokens=6, extra_body={"session_id": "s-1"}
    )
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    reset = requests.post(
        server.url + "/chat/reset", json={"model": "default", "session_id": "s-1"}, timeout=10
    )
    assert reset.status_code == 200 and reset.json()["reset"] is True
    again = client.chat.completions.create(
        model="default", messages=follow, temperature=0, max_tokens=6, extra_body={"session_id": "s-1"}
    )
    assert again.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens


def test_an_idle_chat_session_has_its_next_turns_separator_cached_ahead():
    # A server of its own: follow-ups that other tests' sessions left due would be counted too.
    flags = ["--model", "default", "--parallel", str(PARALLEL), "--ctx-size", str(CTX), "--threads", "1"]
    with hearth_server(*flags) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)

        def follow_ups() -> int:
            return stats(server)["follow_ups_total"]

        def ask(messages: list[dict], session: str):
            return client.chat.completions.create(
                model="default",
                messages=messages,
                temperature=0,
                max_tokens=6,
                # Each session its own user: the second session's turns, the same text as the first's,
                # are not served from the first one's cache, so what its follow-up added can be counted.
                user=session,
                extra_body={"session_id": session},
            )

        def two_turns(session: str, read_first: bool) -> tuple[int, int]:
            messages = [{"role": "user", "content": "Name a fruit, please."}]
            before = follow_ups()
            first = ask(messages, session)
            assert first.choices[0].finish_reason == "length"
            if read_first:  # a person reads the reply: the idle session's follow-up runs meanwhile
                wait_until(lambda: follow_ups() == before + 1, what="the idle session's follow-up")
            done = follow_ups() - before
            reply = {"role": "assistant", "content": first.choices[0].message.content}
            second = ask([*messages, reply, {"role": "user", "content": "And a vegetable?"}], session)
            return second.usage.prompt_tokens_details.cached_tokens, done

        assert follow_ups() == 0
        at_once, done = two_turns("s-at-once", read_first=False)
        assert done == 0  # the second turn came first: its tokens went in with that prompt
        # The at-once session's second reply gets its follow-up in turn; counted before the next session.
        wait_until(lambda: follow_ups() == 1, what="the at-once session's follow-up")
        ahead, done = two_turns("s-ahead", read_first=True)
        assert done == 1
        # The reply's last token and chat-ml's `<|im_end|>\n<|im_start|>user\n` (5 tokens) were cached ahead.
        assert ahead == at_once + 1 + 5


def test_errors_are_the_clients_own_exception_types(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert missing.value.code == "model_not_found" and "default" in missing.value.message
    with pytest.raises(openai.BadRequestError) as hot:
        client.chat.completions.create(model="default", messages=MESSAGES, temperature=5)
    assert hot.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model="default", prompt="word " * (CTX + 10), max_tokens=4)
    assert long.value.code == "context_length_exceeded" and long.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as tools:
        client.chat.completions.create(
            model="default",
            messages=MESSAGES,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        )
    assert tools.value.param == "tool_choice" and "'g' is not a bound tool" in tools.value.message


# -- requests: MLC's examples and the error shape ----------------------------------------------------


def test_mlc_rest_examples_work_as_written(server):
    """The payloads of MLC-Chat's REST docs, byte for byte (the model UID is served by --model)."""
    payload = {
        "model": "vicuna-v1-7b",
        "messages": [{"role": "user", "content": "Write a haiku"}],
        "stream": False,
    }
    r = requests.post(server.url + "/v1/chat/completions", json=payload, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].strip()
    r = requests.post(server.url + "/chat/reset", json=payload, timeout=10)
    assert r.status_code == 200
    payload = {
        "model": "vicuna-v1-7b",
        "messages": [{"role": "user", "content": "Write a haiku"}],
        "stream": True,
    }
    with requests.post(server.url + "/v1/chat/completions", json=payload, stream=True, timeout=60) as r:
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert content.strip()
    r = requests.get(server.url + "/stats", timeout=10)
    figures = r.json()["models"]["vicuna-v1-7b"]
    assert figures["served"]["requests"] == 2 and figures["served"]["completion_tokens"] > 0
    assert figures["decode_tokens_per_s"] > 0 and figures["prefill_tokens_per_s"] > 0
    assert figures["slots_total"] == PARALLEL and figures["slots_in_use"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("post", "/v1/chat/completions", "{not json", 400, None),
        ("post", "/v1/chat/completions", "[1]", 400, None),
        ("post", "/v1/chat/completions", '{"model": "default", "messages": []}', 400, "messages"),
        (
            "post",
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": 1}]}',
            400,
            "messages[0].content",
        ),
        (
            "post",
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "x"}], "foo": 1}',
            400,
            "foo",
        ),
        (
            "post",
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": "x"}], "n": 0}',
            400,
            "n",
        ),
        ("post", "/v1/completions", '{"model": "default", "prompt": ""}', 400, "prompt"),
        (
            "post",
            "/v1/completions",
            '{"model": "default", "prompt": "x", "max_tokens": 0}',
            400,
            "max_tokens",
        ),
        (
            "post",
            "/v1/completions",
            '{"model": "default", "prompt": "x", "grammar": "root ::= ?"}',
            400,
            "response_format",
        ),
        (
            "post",
            "/v1/completions",
            '{"model": "default", "prompt": "x", "grammar": "root ::= [a-z]+", "presence_penalty": 1}',
            400,
            "presence_penalty",
        ),
        ("post", "/v1/completions", '{"model": "nope", "prompt": "x"}', 404, "model"),
        ("get", "/v1/nothing-here", None, 404, None),
        ("post", "/v1/models", None, 405, None),
    ],
)
def test_bad_requests_get_openais_error_shape_never_a_500(server, method, path, body, status, param):
    response = requests.request(
        method, server.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_docs_and_openapi_are_served(server):
    assert "swagger" in requests.get(server.url + "/docs", timeout=10).text.lower()
    paths = requests.get(server.url + "/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/chat/reset", "/stats"} <= set(paths)


# -- cancellation and load --------------------------------------------------------------------------


def test_disconnecting_mid_stream_frees_the_slot_at_once(server):
    body = {"model": "default", "prompt": COUNTING, **ENDLESS, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        lines = r.iter_lines()
        received = [line for line in (next(lines) for _ in range(8)) if line]
        assert len(received) >= 3
        assert stats(server)["slots_in_use"] == 1  # 1000 tokens take seconds: it is still generating
    assert steps_after_leaving(server) < 50  # the steps under way when the connection closed


def test_a_client_that_gives_up_on_a_whole_reply_frees_the_slot(server):
    body = {"model": "default", "prompt": COUNTING, **ENDLESS}
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(server.url + "/v1/completions", json=body, timeout=(5, 0.5))
    assert steps_after_leaving(server) < 50


def test_twenty_concurrent_streaming_clients_all_complete(client, server):
    def stream(i: int) -> tuple[str, int]:
        chunks = list(
            client.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": f"Tell me fact number {i} about owls."}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        return finish, chunks[-1].usage.completion_tokens

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(stream, range(20)))
    assert len(results) == 20
    assert all(finish in ("stop", "length") and tokens > 0 for finish, tokens in results)
    assert stats(server)["queue_depth"] == 0


# -- LangChain's OpenAI chat model ------------------------------------------------------------------


def test_langchain_openai_chat_model_runs_against_the_server(server):
    remote = ChatOpenAI(
        base_url=server.url + "/v1", api_key="unused", model="default", temperature=0, max_tokens=12
    )
    local = ChatHearth(model="default", temperature=0.0, max_new_tokens=12)
    question = [("human", "What is the largest animal?")]
    expected = local.invoke(question).content
    assert remote.invoke(question).content == expected
    chunks = list(remote.stream(question, stream_usage=True))
    assert "".join(c.content for c in chunks) == expected
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.usage_metadata["output_tokens"] == 12


async def test_langchain_openai_async_and_batch(server):
    remote = ChatOpenAI(
        base_url=server.url + "/v1", api_key="unused", model="default", temperature=0, max_tokens=6
    )
    one = await remote.ainvoke("Say hello.")
    assert one.content
    assert [m.content for m in await remote.abatch(["Say hello.", "Say hello."])] == [
        one.content,
        one.content,
    ]


def test_a_long_generation_does_not_hold_up_a_short_one(server):
    """No lock serialises requests: a 4-token reply arrives while a 1000-token stream is generating."""
    body = {"model": "default", "prompt": COUNTING, **ENDLESS, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=30) as long:
        lines = long.iter_lines()
        assert [line for line in (next(lines) for _ in range(4)) if line]
        short = requests.post(
            server.url + "/v1/completions",
            json={"model": "default", "prompt": "Hi", "max_tokens": 4},
            timeout=30,
        )
        assert short.status_code == 200
        assert stats(server)["slots_in_use"] == 1  # done while the long one is still going
    wait_for_idle(server)


# -- function calling -------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_a_forced_tool_call_is_the_chat_models_call_in_openais_shape(client):
    local = ChatHearth(model="default", temperature=0.0, max_new_tokens=48).bind_tools(
        [WEATHER], tool_choice="get_weather"
    )
    expected = local.invoke([("human", ASK_WEATHER[0]["content"])]).tool_calls[0]
    reply = client.chat.completions.create(
        model="default",
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=48,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == expected["name"] == "get_weather"
    assert json.loads(call.function.arguments) == expected["args"]
    assert reply.usage.completion_tokens > 0

    streamed = client.chat.completions.create(
        model="default",
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_tokens=48,
        stream=True,
    )
    chunks = list(streamed)
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and not any(c.choices[0].delta.content for c in chunks if c.choices)
    assert deltas[0].tool_calls[0].function.name == "get_weather"
    assert json.loads(deltas[0].tool_calls[0].function.arguments) == expected["args"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_after_a_tool_result_auto_answers_in_text_from_that_result(client):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    conversation = [
        *ASK_WEATHER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees."},
    ]
    reply = client.chat.completions.create(
        model="default", messages=conversation, tools=[WEATHER], temperature=0, max_tokens=16
    )
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].message.content
    # The engine saw the call and its result as plain turns: the same reply as sending those turns.
    plain = [
        *ASK_WEATHER,
        {"role": "assistant", "content": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"role": "user", "content": "The tool get_weather returned: Sunny, 21 degrees."},
    ]
    again = client.chat.completions.create(model="default", messages=plain, temperature=0, max_tokens=16)
    assert reply.choices[0].message.content == again.choices[0].message.content
    assert reply.usage.prompt_tokens == again.usage.prompt_tokens


def test_langchain_openai_bind_tools_gets_tool_calls_from_the_server(server):
    remote = ChatOpenAI(
        base_url=server.url + "/v1", api_key="unused", model="default", temperature=0, max_tokens=48
    )
    message = remote.bind_tools([WEATHER], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert [c["name"] for c in message.tool_calls] == ["get_weather"]
    assert isinstance(message.tool_calls[0]["args"].get("city"), str)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(server, extra, param):
    body = {"model": "default", "messages": ASK_WEATHER, **extra}
    response = requests.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
