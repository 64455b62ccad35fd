"""The shapes of replies: whole responses and streamed chunks, for chat and text completions alike.

Built as plain dicts and dumped once: a streamed reply makes one chunk per token, and the chunk is
the server's hot path.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from llm.rest import tools
from native import Completion


def usage(completions: list[Completion]) -> dict:
    """Real token counts (the prompt counted once, as OpenAI does for n > 1), with cache reuse."""
    first = completions[0].usage
    generated = sum(c.usage.completion_tokens for c in completions)
    return {
        "prompt_tokens": first.prompt_tokens,
        "completion_tokens": generated,
        "total_tokens": first.prompt_tokens + generated,
        "prompt_tokens_details": {"cached_tokens": first.cached_tokens},
    }


@dataclass
class ResponseBuilder:
    """One response's identity and the builders of its parts."""

    kind: Literal["chat", "text"]
    model: str
    include_usage: bool = False
    as_calls: bool = False
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def _prefix(self) -> str:
        return "chatcmpl-" if self.kind == "chat" else "cmpl-"

    def _envelope(self, object_: str, choices: list[dict]) -> dict:
        return {
            "id": self._prefix + self.id,
            "object": object_,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunk(self, index: int, text: str | None, finish: str | None = None, *, first: bool = False) -> str:
        """One streamed chunk of choice `index`: its text (None in the closing chunk) and finish reason."""
        if self.kind == "chat":
            delta = {} if text is None else {"content": text}
            if first:
                delta = {"role": "assistant", **delta}
            choice = {"index": index, "delta": delta, "finish_reason": finish}
            body = self._envelope("chat.completion.chunk", [choice])
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            body = self._envelope("text_completion", [choice])
        if self.include_usage:
            body["usage"] = None  # as OpenAI: null on every chunk but the last
        return json.dumps(body, separators=(",", ":"))

    def call_chunks(self, index: int, completion: Completion) -> list[str]:
        """A constrained reply, streamed once it has ended: its tool call (or its text, when cut short),
        then the closing chunk."""
        message, finish = tools.message(completion)
        if "tool_calls" in message:
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            delta = {"role": "assistant", "content": None, "tool_calls": calls}
        else:
            delta = {"role": "assistant", "content": message["content"]}
        body = self._envelope(
            "chat.completion.chunk", [{"index": index, "delta": delta, "finish_reason": None}]
        )
        if self.include_usage:
            body["usage"] = None
        return [json.dumps(body, separators=(",", ":")), self.chunk(index, None, finish)]

    def usage_chunk(self, completions: list[Completion]) -> str:
        """The last chunk when `stream_options.include_usage` is set: no choices, the usage."""
        object_ = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return json.dumps({**self._envelope(object_, []), "usage": usage(completions)}, separators=(",", ":"))

    def response(self, completions: list[Completion]) -> dict:
        """The whole (non-streamed) response."""
        if self.kind == "chat":
            choices = []
            for i, c in enumerate(completions):
                message, finish = (
                    tools.message(c)
                    if self.as_calls
                    else ({"role": "assistant", "content": c.text}, c.finish_reason)
                )
                choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
            body = self._envelope("chat.completion", choices)
        else:
            choices = [
                {"index": i, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
                for i, c in enumerate(completions)
            ]
            body = self._envelope("text_completion", choices)
        return {**body, "usage": usage(completions)}


class Totals:
    """Tokens served per model UID since the server started, for /stats."""

    def __init__(self) -> None:
        self._by_uid: dict[str, dict[str, int]] = {}

    def of(self, uid: str) -> dict[str, int]:
        return dict(self._by_uid.get(uid, dict.fromkeys(_TOTALS, 0)))

    def add(self, uid: str, completions: list[Completion]) -> None:
        """Count one finished request (called on the event loop only: no lock needed)."""
        figures = self._by_uid.setdefault(uid, dict.fromkeys(_TOTALS, 0))
        figures["requests"] += 1
        for c in completions:
            figures["prompt_tokens"] += c.usage.prompt_tokens
            figures["cached_tokens"] += c.usage.cached_tokens
            figures["completion_tokens"] += c.usage.completion_tokens


_TOTALS = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens")
