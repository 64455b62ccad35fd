"""The OpenAI wire format the remote engine speaks: the request fields, the SSE chunks read back into a
`Completion`, and the error answers turned into the exceptions the local engine raises."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from native.errors import (
    ContextOverflow,
    EngineBusy,
    EngineFailed,
    HearthError,
    InvalidGrammar,
    ModelNotFound,
)
from native.sampling import SamplingParams
from native.stream import Completion, Timings, Usage


class RemoteRejected(HearthError, ValueError):
    """The server refused the request (bad parameters, wrong API key); its message says why."""


class RemoteContextOverflow(ContextOverflow):
    """ContextOverflow as a server reports it: its message, without token counts of our own."""

    def __init__(self, message: str) -> None:
        self.prompt_tokens = self.context_size = self.max_new_tokens = 0
        Exception.__init__(self, message)


DONE = object()
"""What `sse_data` returns for the `data: [DONE]` line that ends an OpenAI stream."""


def sse_data(line: str) -> dict | object | None:
    """The JSON of one SSE `data:` line, DONE at the end, None for blank, comment and other lines.
    Raises EngineFailed for an error event, which OpenAI-compatible servers send mid-stream."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    event = json.loads(data)
    if isinstance(event, dict) and event.get("error"):
        error = event["error"]
        raise EngineFailed(error.get("message", str(error)) if isinstance(error, dict) else str(error))
    return event


def request_fields(sampling: SamplingParams, model: str, session: str | None) -> dict[str, Any]:
    """Every sampling setting, sent explicitly (a server's defaults are not ours), in the names OpenAI
    and llama.cpp's servers use. `user` carries the session: Hearth keeps its KV cache in one slot."""
    fields: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repeat_penalty": sampling.repetition_penalty,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }
    optional = {
        "seed": sampling.seed,
        "stop": list(sampling.stop),
        "grammar": sampling.grammar,
        "user": session,
    }
    return fields | {k: v for k, v in optional.items() if v not in (None, [])}


class ChunkReader:
    """Adds up streamed chunks (chat or text) into the text, finish reason, usage and timings."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.deltas = 0
        self.first: float | None = None
        self.finish: str | None = None
        self.usage: dict | None = None
        self.error: str | None = None

    def feed(self, event: dict) -> str:
        """One chunk in; its text out."""
        if event.get("usage"):
            self.usage = event["usage"]
        text = ""
        for choice in event.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            self.finish = choice.get("finish_reason") or self.finish
        if text:
            self.first = self.first or time.perf_counter()
            self.deltas += 1
            self.parts.append(text)
        return text

    def completion(self) -> Completion:
        ended = time.perf_counter()
        if self.error:
            finish = "error"
        elif self.finish in ("length", "cancelled"):
            finish = self.finish
        elif self.finish is None:
            finish, self.error = "error", "the server ended the stream without a finish reason"
        else:
            finish = "stop"  # "stop", "tool_calls", "content_filter": the reply is over
        usage = self.usage or {}
        # Servers that cannot report usage while streaming (llama-cpp-python's) get one token per chunk.
        generated = usage.get("completion_tokens", self.deltas)
        prompt = usage.get("prompt_tokens", 0)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        ttft = (self.first or ended) - self.started
        return Completion(
            text="".join(self.parts),
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(prompt, cached, generated),
            timings=Timings(
                time_to_first_token=ttft,
                prefill_tokens_per_s=(prompt - cached) / ttft if ttft > 0 else 0.0,
                decode_tokens_per_s=(generated - 1) / (ended - self.first)
                if self.first and generated > 1 and ended > self.first
                else 0.0,
            ),
            error=self.error,
        )


def _error_body(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return error
    return {"message": error or (body.get("detail") if isinstance(body, dict) else None)}


def refusal(response: httpx.Response, where: str) -> HearthError:
    """The exception the local engine would raise for what a server answered (OpenAI's error codes)."""
    error = _error_body(response)
    message = f"{where} answered {response.status_code}: {error.get('message') or response.text}"
    status, code = response.status_code, error.get("code")
    if status == 400 and code == "context_length_exceeded":
        return RemoteContextOverflow(message)
    if status == 400 and error.get("param") in ("grammar", "response_format"):
        return InvalidGrammar(message)
    if status in (429, 503):
        return EngineBusy(f"{message}; retry in {response.headers.get('retry-after', 'a few')} s")
    if status == 404:
        return ModelNotFound(message)
    if status < 500:
        return RemoteRejected(message)
    return EngineFailed(message)
