"""Function calling: describing functions, finding calls in output, parsing without eval, validating
against signatures, running them and resuming generation (NanoLLM), and LangChain's bind_tools,
tool_calls and structured output (ChatHearth). Driven by scripted model output (the real tokenizer
with replies written here) and by the real model."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from llm import ChatHearth
from llm.nano import BotFunctions, NanoLLM, bot_function
from llm.nano.stream import MAX_FUNCTION_CALLS
from llm.tools import CallError, Function, find_call, parse_call, run_call
from llm.tools import langchain as tool_calls
from native import Completion, SamplingParams, Stream, Timings, Usage

DATE_TEXT = "Monday, June 2 2025"


@pytest.fixture
def calls() -> list[str]:
    """The names of the registered functions that ran, in order."""
    return []


@pytest.fixture
def registry(calls) -> Iterator[type[BotFunctions]]:
    """BotFunctions with DATE, TIME and ADD registered; the process-wide list is restored after."""
    saved = list(BotFunctions.functions)
    BotFunctions.functions.clear()

    @bot_function
    def DATE():  # noqa: N802 - the seed's naming
        """Returns the current date."""
        calls.append("DATE")
        return DATE_TEXT

    @bot_function
    def TIME():  # noqa: N802
        """Returns the current time."""
        calls.append("TIME")
        return "9:41 AM"

    @bot_function(name="ADD", docs="Adds two integers.")
    def add(a: int, b: int = 1) -> int:
        calls.append("ADD")
        return a + b

    yield BotFunctions
    BotFunctions.functions[:] = saved


class ScriptedEngine:
    """The real engine's tokenizer and metadata with the model's replies written in advance: each
    request gets the next one, delivered three characters at a time. It records every request. An
    engine of the caller's, so it implements the engine protocol (native.protocol)."""

    renders_chat = False
    closed = False
    model_name: str
    n_ctx: int

    def __init__(self, engine, replies: list[str]) -> None:
        self.engine, self.replies = engine, list(replies)
        self.info, self.n_ctx, self.model_name = engine.info, engine.n_ctx, engine.model_name
        self.requests: list[tuple[list[int], SamplingParams, str | None]] = []

    def tokenize(self, text: str, **kwargs) -> list[int]:
        return self.engine.tokenize(text, **kwargs)

    def detokenize(self, tokens: list[int]) -> str:
        return self.engine.detokenize(tokens)

    def submit(
        self,
        prompt: list[int],
        sampling: SamplingParams | None = None,
        session: str | None = None,
        *,
        followed_by: str | None = None,
        user: str | None = None,
    ) -> Stream:
        self.requests.append((list(prompt), sampling, session))
        text = self.replies.pop(0)
        stream = Stream()
        for i in range(0, len(text), 3):
            stream.push(text[i : i + 3])
        n = len(self.engine.tokenize(text, add_special=False))
        stream.finish(Completion(text, "stop", Usage(len(prompt), 0, n), Timings(0.0, 0.0, 0.0)))
        return stream

    def forget_session(self, session: str, user: str | None = None) -> None:
        pass

    def save_sessions(self) -> None:
        pass

    def stats(self) -> dict:
        return {"requests_total": len(self.requests)}

    def close(self) -> None:
        pass


def scripted(engine, *replies: str) -> tuple[NanoLLM, ScriptedEngine]:
    fake = ScriptedEngine(engine, list(replies))
    return NanoLLM(fake), fake  # type: ignore[arg-type]


# -- describing functions ---------------------------------------------------------------------------


def test_a_function_is_described_by_its_signature_and_docstring(registry):
    add = next(f for f in registry() if f.name == "ADD")
    assert add.signature == "ADD(a: int, b: int = 1)"
    assert add.schema() == {
        "type": "object",
        "properties": {
            "a": {"title": "A", "type": "integer"},
            "b": {"default": 1, "title": "B", "type": "integer"},
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    with pytest.raises(TypeError, match=r"\*args"):
        Function.from_callable(lambda *values: None, name="SUM")
    with pytest.raises(ValueError, match="identifier"):
        Function.from_callable(lambda: None, name="not a name")


def test_generate_docs_lists_the_enabled_functions(registry):
    docs = registry.generate_docs()
    assert "* `DATE()` - Returns the current date.\n* `TIME()` - Returns the current time." in docs
    assert "* `ADD(a: int, b: int = 1)` - Adds two integers." in docs
    assert "`DATE()`" in docs.split("\n\n")[1]  # the explanation shows how to call
    registry.filter(["time"], mode="disable")
    assert "TIME" not in registry.generate_docs() and [f.name for f in registry()] == ["DATE", "ADD"]
    assert registry.generate_docs(prologue=False, epilogue=False).startswith("* `DATE()`")
    assert len(registry(all=True)) == 3


def test_registering_a_name_again_replaces_it(registry):
    @bot_function(name="DATE")
    def other_date():
        return "tomorrow"

    assert [f.name for f in registry()].count("DATE") == 1
    assert registry.run("DATE()").text == "tomorrow"
    assert registry.unregister("DATE") and not registry.unregister("DATE")


# -- parsing, never evaluating ----------------------------------------------------------------------


def test_calls_parse_from_python_and_json():
    call = parse_call("`ADD(2, b=3)`")
    assert (call.name, call.args, dict(call.kwargs)) == ("ADD", (2,), {"b": 3})
    call = parse_call('{"name": "ADD", "arguments": {"a": 2}}')
    assert (call.name, dict(call.kwargs)) == ("ADD", {"a": 2})
    assert parse_call("F(x=true, y=null, z=[1, 'a'])").kwargs == {"x": True, "y": None, "z": [1, "a"]}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("DATE", "not a call"),
        ("os.system('ls')", "not a call of the form NAME"),
        ("__import__('os').system('ls')", "not a call of the form NAME"),
        ("ADD(1, b=len('abc'))", "literal values"),
        ("ADD(*[1, 2])", r"\*arguments"),
        ("ADD(**{'a': 1})", r"\*\*arguments"),
        ("ADD(1 +", "not a function call"),
        ('{"name": "ADD", "arguments": [1]}', "must be a JSON object"),
        ('{"arguments": {}}', "JSON function call is an object"),
    ],
)
def test_malformed_calls_are_refused(source, message):
    with pytest.raises(CallError, match=message):
        parse_call(source)


def test_nothing_in_a_call_is_evaluated(registry, calls):
    outcome = registry.run("ADD(DATE(), 1)")
    assert not outcome.ok and "literal values" in outcome.text
    assert calls == []  # DATE was not run to compute the argument


def test_running_checks_name_and_arguments(registry):
    assert registry.run("ADD(2, 3)").text == "5"
    assert registry.run("ADD(a='4')").text == "5"  # pydantic's usual coercion of numeric strings
    refused = {
        "WEATHER('Paris')": "WEATHER is not a function you can call (available: ADD, DATE, TIME)",
        "ADD('two')": "bad arguments for ADD(a: int, b: int = 1): a: Input should be a valid integer",
        "ADD()": "a: Field required",
        "ADD(1, 2, 3)": "takes 2 arguments, 3 were given",
        "ADD(1, c=2)": "c: Extra inputs are not permitted",
        "ADD(1, a=2)": "both by position and by name",
    }
    for source, message in refused.items():
        outcome = registry.run(source)
        assert not outcome.ok and message in outcome.text, (source, outcome.text)
    registry.filter(["DATE"], mode="disable")
    assert "not a function you can call" in registry.run("DATE()").text


def test_a_failing_function_is_reported_not_raised():
    def broken() -> str:
        raise RuntimeError("no network")

    outcome = run_call("broken()", {"broken": Function.from_callable(broken)})
    assert not outcome.ok and outcome.text == "broken() failed: RuntimeError: no network"


# -- finding calls in streamed output ---------------------------------------------------------------


def test_find_call_waits_for_the_closing_parenthesis():
    names = ["ADD", "DATE"]
    assert find_call("Sure: ADD(1, ", names) is None
    found = find_call("Sure: ADD(1, 2) and more", names)
    assert (found.source, found.start, found.end) == ("ADD(1, 2)", 6, 15)
    found = find_call("ADD(')', [1, (2)]) tail", names)
    assert found.source == "ADD(')', [1, (2)])"
    assert find_call("The DATE (today) is ADDED(1)", names) is None  # prose, and another name
    found = find_call("Try `WEATHER('Paris')` now", names)
    assert found.source == "WEATHER('Paris')" and found.backticked
    assert find_call("DATE() then DATE()", names, start=6).start == 12


# -- during generation ------------------------------------------------------------------------------


def test_a_scripted_call_runs_and_generation_resumes_after_its_result(engine, registry, calls):
    model, fake = scripted(engine, "The date is `DATE()` so there.", " Have a nice day.")
    reply = model.generate("What is the date?", functions=registry(), max_new_tokens=50)
    pieces = list(reply)
    assert reply.text == f"The date is `DATE()` {DATE_TEXT} Have a nice day."
    assert f"` {DATE_TEXT}" in pieces  # the result comes as one piece of the stream
    assert calls == ["DATE"] and reply.calls == [("DATE()", f"` {DATE_TEXT}")]
    # What reached the engine: the second request continues the first, in the same session, with the
    # reply up to the end of the call plus the result (what the model wrote after the call is dropped).
    (first, sampling, session), (second, sampling2, session2) = fake.requests
    assert first == engine.tokenize("What is the date?")
    assert second == first + engine.tokenize(f"The date is `DATE()` {DATE_TEXT}", add_special=False)
    assert (
        session2 == session and sampling2.max_new_tokens == 50 - reply.completions[0].usage.completion_tokens
    )


def test_a_call_to_an_unregistered_function_gets_a_visible_message(engine, registry, calls):
    model, _ = scripted(engine, "Let me look: `WEATHER('Paris')` ok", " Sorry.")
    reply = model.generate("Weather?", functions=registry())
    assert reply.wait() == (
        "Let me look: `WEATHER('Paris')` (error: WEATHER is not a function you can call "
        "(available: ADD, DATE, TIME)) Sorry."
    )
    assert calls == []


def test_wrong_argument_types_get_a_visible_message(engine, registry, calls):
    model, _ = scripted(engine, "ADD(1, 'two')", ".")
    text = model.generate("Add", functions=registry(), streaming=False)
    assert "(error: bad arguments for ADD(a: int, b: int = 1): b: Input should be a valid integer" in text
    assert calls == []


def test_a_model_stuck_calling_is_stopped(engine, registry):
    model, fake = scripted(engine, *[" DATE()"] * (MAX_FUNCTION_CALLS + 5))
    reply = model.generate("Date?", functions=registry(), max_new_tokens=500)
    reply.wait()
    assert len(reply.calls) == MAX_FUNCTION_CALLS and len(fake.requests) == MAX_FUNCTION_CALLS


def test_the_token_budget_spans_every_request(engine, registry):
    model, fake = scripted(engine, "DATE()", "one two three four five six")
    budget = len(engine.tokenize("DATE()", add_special=False))
    reply = model.generate("Date?", functions=registry(), max_new_tokens=budget)
    reply.wait()
    # "DATE()" took every token: its result is added but no request follows.
    assert len(fake.requests) == 1 and reply.text == f"DATE() {DATE_TEXT}"


def test_the_real_model_calls_functions_mid_reply(engine, registry, calls):
    model = NanoLLM.from_pretrained("default")
    prompt = (
        "Q: What is the date?\nA: DATE() Monday, June 2 2025\n"
        "Q: What time is it?\nA: TIME() 9:41 AM\n"
        "Q: What is the date?\nA:"
    )
    reply = model.generate(prompt, functions=registry(), max_new_tokens=20)
    text = reply.wait()
    assert text.startswith(f" DATE() {DATE_TEXT}")  # called, and its result inserted right after the call
    assert calls[0] == "DATE" and len(reply.completions) == len(reply.calls) + 1
    first, resumed = reply.completions[0].usage, reply.completions[1].usage
    # Generation resumed in the same cache: the prompt and the call were not computed again, only the
    # result (and the call's last token, sampled but never computed when the request was stopped).
    call = len(engine.tokenize(" DATE()", add_special=False))
    assert resumed.cached_tokens >= first.prompt_tokens + call - 1
    assert (
        resumed.prompt_tokens - resumed.cached_tokens
        <= len(engine.tokenize(f" {DATE_TEXT}", add_special=False)) + 1
    )
    assert sum(c.usage.completion_tokens for c in reply.completions) <= 20
    assert re.search(r"DATE\(\) Monday, June 2 2025", text)


# -- LangChain: bind_tools, tool_calls and structured output ------------------------------------------


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "It's sunny."


@tool
def magic_function(input: int) -> int:  # noqa: A002 - LangChain's standard test tool
    """Apply a magic function to an input."""
    return input + 2


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="question to set up a joke")
    punchline: str = Field(description="answer to resolve the joke")


@pytest.fixture(scope="module")
def chat(engine) -> ChatHearth:
    # The default repetition penalty (1.1) stays on: constrained calls must not trip over it.
    return ChatHearth(model="default", temperature=0.0, max_new_tokens=64)


def test_bound_tools_give_tool_calls_that_match_the_schema(chat):
    message = chat.bind_tools([get_weather]).invoke("What is the weather in San Francisco, CA?")
    assert message.content == "" and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == "get_weather" and set(call["args"]) == {"location"}
    assert isinstance(call["args"]["location"], str) and call["id"].startswith("call_")
    assert get_weather.invoke(call).content == "It's sunny."  # LangChain can run what we return


def test_tool_choice_picks_the_tool_and_none_answers_in_text(chat):
    forced = chat.bind_tools([get_weather, magic_function], tool_choice="magic_function").invoke("Hello!")
    assert [c["name"] for c in forced.tool_calls] == ["magic_function"]
    assert isinstance(forced.tool_calls[0]["args"]["input"], int)
    plain = chat.bind_tools([get_weather], tool_choice="none").invoke("Hello!")
    assert plain.tool_calls == [] and plain.content
    with pytest.raises(ValueError, match="not a bound tool"):
        chat.bind_tools([get_weather], tool_choice="send_email")


def test_after_a_tool_result_the_model_answers_in_text(chat):
    question = HumanMessage("What is the weather in Paris?")
    call = chat.bind_tools([get_weather]).invoke([question])
    result = get_weather.invoke(call.tool_calls[0])
    answer = chat.bind_tools([get_weather]).invoke([question, call, result])
    assert answer.tool_calls == [] and answer.content


def test_the_prompt_describes_the_tools_and_renders_the_history(chat):
    tools = tool_calls.format_tools([get_weather])
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"location": "Paris"}, "id": "c1"}]),
        ToolMessage("It's sunny.", name="get_weather", tool_call_id="c1"),
    ]
    turns = tool_calls.with_instructions(tool_calls.tool_history(history), tools, "Be brief.")
    text = chat.render(turns).text
    assert "Be brief.\n\nYou can call these tools:\n- get_weather: Get the weather at a location." in text
    assert '{"name": "get_weather", "arguments": {"location": "Paris"}}' in text
    assert "The tool get_weather returned: It's sunny." in text


def test_structured_output_returns_the_schema(chat):
    joke = chat.with_structured_output(Joke).invoke("Tell me a joke about cats.")
    assert isinstance(joke, Joke) and joke.setup and joke.punchline
    as_dict = chat.with_structured_output(Joke.model_json_schema()).invoke("Tell me a joke about dogs.")
    assert set(as_dict) == {"setup", "punchline"}


def test_a_cut_off_call_is_reported_invalid_not_completed(engine):
    stream = Stream()
    stream.push('{"name": "get_weather", "arguments": {"location": "Par')
    stream.finish(Completion("", "length", Usage(1, 0, 9), Timings(0.0, 0.0, 0.0)))
    cut = tool_calls.ToolCallStream(stream)
    assert list(cut) == [""]  # the call's JSON is not shown as text
    message = AIMessageChunk(content="", tool_call_chunks=cut.tool_call_chunks())
    assert message.tool_calls == [] and len(message.invalid_tool_calls) == 1


def test_unicode_arguments_are_kept_as_written():
    stream = Stream()
    stream.push('{"name": "customer", "arguments": {"name": "你好啊集团"}}')
    stream.finish(Completion("", "stop", Usage(1, 0, 9), Timings(0.0, 0.0, 0.0)))
    call = tool_calls.ToolCallStream(stream)
    list(call)
    assert call.tool_call_chunks()[0]["args"] == '{"name": "你好啊集团"}'


def test_free_strings_are_capped_so_calls_always_close():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "enum": ["x", "y"]},
            "c": {"type": "array", "items": {"type": "string", "minLength": 100}},
        },
    }
    capped = tool_calls.capped(schema)
    assert capped["properties"]["a"]["maxLength"] == tool_calls.MAX_STRING_CHARS
    assert "maxLength" not in capped["properties"]["b"]
    assert capped["properties"]["c"]["items"]["maxLength"] == 100
    assert "maxLength" not in schema["properties"]["a"]  # the caller's schema is left alone
