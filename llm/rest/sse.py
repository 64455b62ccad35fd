"""Delivering generations: as server-sent events, or whole once every choice has finished.

Either way a client that goes away cancels its generations at once, so a dropped connection never
keeps a slot busy: sse-starlette reports the disconnect of a stream, and `gather_unless_gone` watches
for the disconnect of a plain request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.requests import Request

from llm.rest.errors import APIError
from llm.rest.replies import ResponseBuilder, Totals
from native import Completion, Stream
from native.errors import EngineFailed


def cancel_all(streams: list[Stream]) -> None:
    for stream in streams:
        if not stream.done:
            stream.cancel()


def _event(data: str) -> bytes:
    """One SSE event, encoded here: the JSON holds no raw newline, so it is a single `data:` line."""
    return b"data: " + data.encode() + b"\n\n"


async def events(
    reply: ResponseBuilder, streams: list[Stream], totals: Totals, interval: float = 0.0
) -> AsyncIterator[bytes]:
    """Each choice's chunks in turn (every choice generates at once; the later ones wait in their
    streams), then the usage if asked for, then [DONE]. A failure mid-stream becomes an error event,
    as OpenAI sends one, since the status line has already gone out. `interval`: the least seconds
    between two text chunks of a choice (see `Stream.ajoined`)."""
    try:
        for index, stream in enumerate(streams):
            if reply.as_calls:  # a call's JSON is not text for the user: sent whole, as a tool call
                completion = await stream.aresult()
                _check(completion)
                for chunk in reply.call_chunks(index, completion):
                    yield _event(chunk)
                continue
            if reply.kind == "chat":
                yield _event(reply.chunk(index, "", first=True))
            async for delta in stream.ajoined(interval):  # a lagging client gets fewer, larger chunks
                yield _event(reply.chunk(index, delta))
            _check(stream.completion)  # type: ignore[arg-type]
            yield _event(reply.chunk(index, None, stream.completion.finish_reason))  # type: ignore[union-attr]
        completions: list[Completion] = [s.completion for s in streams]  # type: ignore[misc]
        totals.add(reply.model, completions)
        if reply.include_usage:
            yield _event(reply.usage_chunk(completions))
        yield _event("[DONE]")
    except EngineFailed as exc:
        yield _event(json.dumps(APIError(500, str(exc), code="generation_failed").body()))
    finally:
        cancel_all(streams)


def _check(completion: Completion) -> None:
    if completion.finish_reason not in ("stop", "length"):
        raise EngineFailed(f"the generation ended with {completion.finish_reason}")


def stream_response(
    reply: ResponseBuilder, streams: list[Stream], totals: Totals, interval: float = 0.0
) -> EventSourceResponse:
    async def client_gone(message: dict) -> None:
        cancel_all(streams)

    body = events(reply, streams, totals, interval)
    return EventSourceResponse(body, sep="\n", client_close_handler_callable=client_gone)


async def gather_unless_gone(request: Request, streams: list[Stream]) -> list[Completion] | None:
    """Every stream's Completion, or None if the client disconnected first (then all are cancelled).
    Raises EngineFailed if a generation failed."""
    results = asyncio.gather(*(stream.aresult() for stream in streams))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not results.done():
            return None
        completions = results.result()
        for completion in completions:
            _check(completion)
        return completions
    finally:
        gone.cancel()
        results.cancel()
        cancel_all(streams)


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
