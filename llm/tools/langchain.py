"""Tool calling for ChatHearth: tools described in the prompt, the reply constrained by a llama.cpp
grammar to `{"name": TOOL, "arguments": {...}}` for one of the bound tools, and that JSON turned into
LangChain `tool_calls`.

`tool_choice` is LangChain's: "any"/"required"/True or a tool's name force a call, "none" forbids one.
"auto" (the default) is a fixed rule rather than the model's whim, because small local models given
the choice almost never call a tool (SmolLM2-135M never does): a call when the conversation ends with
the user's message, a text answer once the last message is a tool's result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from llm.settings import GenerationSettings
from llm.tools.calls import parse_json_call
from llm.tools.spec import CallError
from native import SamplingParams, Stream
from native.sampling import json_grammar

FORCED = ("any", "required")
MAX_STRING_CHARS = 60
"""The longest free-form string argument a constrained call may hold (see `capped`)."""


def format_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    """OpenAI-format tool definitions of LangChain tools, pydantic models, functions or dicts."""
    return [convert_to_openai_tool(tool) for tool in tools]


def resolve_choice(tool_choice: Any, tools: list[dict[str, Any]]) -> str:
    """ "auto", "none", "any" or a tool's name, from any form LangChain accepts; ValueError otherwise."""
    names = [t["function"]["name"] for t in tools]
    if tool_choice is None or tool_choice == "auto":
        return "auto"
    if tool_choice is True or tool_choice in FORCED:
        return "any"
    if isinstance(tool_choice, dict):
        tool_choice = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
    if tool_choice == "none" or tool_choice in names:
        return tool_choice
    raise ValueError(
        f"tool_choice {tool_choice!r} is not a bound tool; give one of {names}, or auto, any, required, none"
    )


def should_call(choice: str, messages: Sequence[BaseMessage]) -> bool:
    """Whether this reply is a tool call (see the module docstring for "auto")."""
    if choice == "none":
        return False
    return choice != "auto" or not messages or not isinstance(messages[-1], ToolMessage)


@dataclass(frozen=True)
class ToolTurn:
    """What the model is shown for one reply while tools are bound, and whether that reply is a call."""

    messages: list[BaseMessage]
    """The conversation as plain turns (see `tool_history`), the tools described in its system
    message when the reply is a call."""
    grammar: str | None
    """The grammar of one call of the chosen tool when the reply is a call; None for a text answer."""


def tool_turn(
    messages: Sequence[BaseMessage],
    tools: list[dict[str, Any]],
    choice: str,
    system_prompt: str | None = None,
) -> ToolTurn:
    """The tool-calling flow of ChatHearth and of the REST server: whether this reply is a call, the
    conversation the model sees, and the grammar that holds its reply to one call."""
    history = tool_history(messages)
    if not should_call(choice, messages):
        return ToolTurn(history, None)
    return ToolTurn(with_instructions(history, tools, system_prompt), call_grammar(tools, choice))


def reply_call(text: str) -> tuple[str, str] | None:
    """The tool's name and its arguments as a JSON object string, of a constrained reply; None when the
    reply does not parse (max_new_tokens cut the JSON short)."""
    try:
        call = parse_json_call(text)
    except CallError:
        return None
    return call.name, json.dumps(dict(call.kwargs or {}), ensure_ascii=False)


def call_id() -> str:
    """A new tool call's id, in OpenAI's form."""
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_history(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Tool calls and tool results as plain turns any chat template can render: a call is the JSON the
    model writes for one, a result is a user turn that says which tool returned what."""
    converted: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            calls = [
                json.dumps({"name": c["name"], "arguments": c["args"]}, ensure_ascii=False)
                for c in m.tool_calls
            ]
            converted.append(AIMessage("\n".join([m.text, *calls]).strip()))
        elif isinstance(m, ToolMessage):
            outcome = "failed" if m.status == "error" else "returned"
            converted.append(HumanMessage(f"The tool {m.name or m.tool_call_id} {outcome}: {m.text}"))
        else:
            converted.append(m)
    return converted


def with_instructions(
    messages: list[BaseMessage], tools: list[dict[str, Any]], system_prompt: str | None
) -> list[BaseMessage]:
    """The conversation with the tools described in its system message (added if there is none)."""
    lines = []
    for tool in tools:
        function = tool["function"]
        arguments = json.dumps(function.get("parameters", {}).get("properties", {}), ensure_ascii=False)
        lines.append(f"- {function['name']}: {function.get('description', '')} Arguments: {arguments}")
    instructions = (
        "You can call these tools:\n"
        + "\n".join(lines)
        + '\nTo call one, reply with JSON: {"name": ..., "arguments": {...}}'
    )
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(f"{messages[0].text}\n\n{instructions}"), *messages[1:]]
    opening = f"{system_prompt}\n\n{instructions}" if system_prompt else instructions
    return [SystemMessage(opening), *messages]


def call_grammar(tools: list[dict[str, Any]], choice: str) -> str:
    """A GBNF grammar for one call of the chosen tool (of any bound tool for "any" and "auto")."""
    chosen = [t for t in tools if choice in ("any", "auto", t["function"]["name"])]
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": capped(t["function"].get("parameters") or {"type": "object", "properties": {}}),
            },
            "required": ["name", "arguments"],
        }
        for t in chosen
    ]
    return json_grammar(alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives})


def capped(schema: Any) -> Any:
    """`schema` with a maxLength on every free-form string. Without repetition penalties (see
    ConstrainedSettings) a small model can repeat one word until max_new_tokens, leaving its JSON
    unclosed; a cap makes the grammar close the string and the call still parses."""
    if isinstance(schema, list):
        return [capped(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: capped(value) for key, value in schema.items()}
    free = not ({"maxLength", "enum", "const", "pattern", "format"} & out.keys())
    if out.get("type") == "string" and free:
        out["maxLength"] = max(MAX_STRING_CHARS, out.get("minLength", 0))
    return out


class ConstrainedSettings(GenerationSettings):
    """Generation settings whose sampling follows a grammar, without repetition penalties.

    JSON repeats its quotes, colons and braces by design: penalising repeats would push the model
    toward whatever the grammar still allows instead of what it means."""

    grammar: str = Field(exclude=True, description="A GBNF grammar the reply must follow.")

    def sampling(self, extra_stop: tuple[str, ...] | list[str] = ()) -> SamplingParams:
        return super().sampling(extra_stop).constrained(self.grammar)


class ToolCallStream:
    """The engine's stream of a reply that is a tool call. Its JSON is not shown as text: iteration
    yields an empty delta per piece (callbacks still see progress), and `tool_call_chunks` gives the
    call once the stream has ended."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        for delta in self.stream:
            self.text += delta
            yield ""

    async def __aiter__(self) -> AsyncIterator[str]:
        async for delta in self.stream:
            self.text += delta
            yield ""

    @property
    def completion(self):
        return self.stream.completion

    def cancel(self) -> None:
        self.stream.cancel()

    def tool_call_chunks(self) -> list[dict[str, Any]]:
        """One chunk holding the whole call. A reply that does not parse (cut by max_new_tokens) is
        kept as a JSON string, so that LangChain reports it in `invalid_tool_calls` (its parser would
        otherwise complete the truncated JSON and pass it off as a call)."""
        call = reply_call(self.text)
        name, args = call if call is not None else (None, json.dumps(self.text, ensure_ascii=False))
        return [{"name": name, "args": args, "id": call_id(), "index": 0, "type": "tool_call_chunk"}]
