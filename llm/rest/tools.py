"""Function calling over the REST API, in OpenAI's shapes, on the chat models' tool machinery
(`llm.tools.langchain`): the tools described in the system message, the reply constrained by a
llama.cpp grammar to one call of a declared tool, and that JSON returned as `tool_calls`.

`tool_choice` follows `llm.tools.langchain`: "required" or a named function force a call, "none"
forbids one, and "auto" calls a tool after the user's turn and answers in text after a tool result
(small models given the choice almost never call one).
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from llm.chat_models import role_of
from llm.rest.errors import APIError
from llm.tools import langchain as tool_calls
from native import Completion


def conversation(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """OpenAI messages as LangChain messages; a tool result is named after the call it answers."""
    names: dict[str, str] = {}
    converted: list[BaseMessage] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                names[call["id"]] = call["function"]["name"]
                calls.append({"name": call["function"]["name"], "args": _arguments(call), "id": call["id"]})
            converted.append(AIMessage(content, tool_calls=calls))
        elif role == "tool":
            call_id = m.get("tool_call_id") or ""
            converted.append(ToolMessage(content, tool_call_id=call_id, name=names.get(call_id)))
        elif role == "assistant":
            converted.append(AIMessage(content))
        elif role == "system":
            converted.append(SystemMessage(content))
        else:
            converted.append(HumanMessage(content))
    return converted


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    try:
        arguments = json.loads(call["function"].get("arguments") or "{}")
    except json.JSONDecodeError:
        raise APIError(
            400, "a tool call's arguments must be a JSON object string", param="messages"
        ) from None
    if not isinstance(arguments, dict):
        raise APIError(400, "a tool call's arguments must be a JSON object string", param="messages")
    return arguments


def plain(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """Messages as the {"role", "content"} turns a chat template renders."""
    return [{"role": role_of(m), "content": m.text} for m in messages]


def choice_of(tool_choice: str | dict | None, tools: list[dict[str, Any]]) -> str:
    """OpenAI's tool_choice as "auto", "none", "any" or a tool's name; a 400 for anything else."""
    try:
        return tool_calls.resolve_choice(tool_choice, tools)
    except ValueError as exc:
        raise APIError(400, str(exc), param="tool_choice") from None


def message(completion: Completion) -> tuple[dict[str, Any], str]:
    """The assistant message of a constrained reply and its finish reason: a tool call, or, when the
    JSON was cut short by max_tokens, the raw text with finish_reason "length"."""
    call = tool_calls.reply_call(completion.text)
    if call is None:
        return {"role": "assistant", "content": completion.text}, completion.finish_reason
    name, arguments = call
    function = {"name": name, "arguments": arguments}
    tool_call = {"id": tool_calls.call_id(), "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [tool_call]}, "tool_calls"
