"""What `engine.submit` returns: text deltas for sync and async consumers, ending in a `Completion`.

The engine's thread produces; any number of threads or event loops consume. Consumers block on a
condition (sync) or an asyncio.Event woken with `call_soon_threadsafe` (async): nobody polls.
A consumer that stops iterating early (a dropped client, a `break`) cancels the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Literal

from native.errors import EngineFailed

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    """Tokens in the prompt, all of them, cached or not."""
    cached_tokens: int
    """Prompt tokens whose KV cache was reused instead of computed again."""
    completion_tokens: int
    """Tokens generated (the end-of-generation token is not counted)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    time_to_first_token: float
    """Seconds from submit to the first generated token."""
    prefill_tokens_per_s: float
    """Prompt tokens actually computed (not cached) per second."""
    decode_tokens_per_s: float
    """Generated tokens per second after the first."""
    queued_s: float = 0.0
    """Seconds the request waited before the engine started on it."""


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    error: str | None = None


class Stream:
    """Iterable and async-iterable over text deltas of one generation; `cancel()` stops it."""

    def __init__(self) -> None:
        self._deltas: deque[str] = deque()
        self._completion: Completion | None = None
        self._cond = threading.Condition()  # wakes sync iterators on every delta
        self._done = threading.Event()  # wakes `result()` waiters once, at the end
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._cancel = threading.Event()
        self.queue_position: int | None = None
        """1 for the next request to get a slot, 2 for the one after...; None while it has one (or
        until the engine has looked at its queue: at its next step)."""

    # -- producer side (the engine's thread) --------------------------------------------------------

    def _push(self, delta: str) -> None:
        if delta:
            with self._cond:
                self._deltas.append(delta)
            self._wake()

    def _finish(self, completion: Completion) -> None:
        self.queue_position = None
        with self._cond:
            self._completion = completion
        self._done.set()
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, event in waiters:
            # A closed loop means that consumer is gone: nobody to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- consumer side ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the engine to stop this generation; it ends with finish_reason `cancelled`."""
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self._completion is not None

    def result(self, timeout: float | None = None) -> Completion:
        """Block until the generation ends (consuming nothing) and return its Completion."""
        if not self._done.wait(timeout):
            raise TimeoutError("the generation did not finish in time")
        return self._completion  # type: ignore[return-value]

    async def aresult(self) -> Completion:
        async for _ in self:
            pass
        return self._completion  # type: ignore[return-value]

    @property
    def completion(self) -> Completion | None:
        """The Completion once the stream has ended, else None."""
        return self._completion

    def _next_item(self, joined: bool = False) -> str | Completion | None:
        with self._cond:
            if self._deltas:
                if not joined or len(self._deltas) == 1:
                    return self._deltas.popleft()
                text = "".join(self._deltas)
                self._deltas.clear()
                return text
            return self._completion

    def _raise_if_failed(self, completion: Completion) -> None:
        if completion.finish_reason == "error":
            raise EngineFailed(completion.error or "generation failed")

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._deltas or self._completion is not None)
                item = self._next_item()
                if isinstance(item, Completion):
                    self._raise_if_failed(item)
                    return
                if item is not None:
                    yield item
        finally:
            if not self.done:
                self.cancel()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aiter(joined=False)

    def ajoined(self) -> AsyncIterator[str]:
        """Async iteration where each item joins every delta that arrived since the previous one: a
        consumer slower than the engine (a network client) gets fewer, larger pieces instead of
        falling further behind one delta at a time."""
        return self._aiter(joined=True)

    async def _aiter(self, joined: bool) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._cond:
            self._waiters.append((loop, event))
        try:
            while True:
                item = self._next_item(joined)
                if isinstance(item, Completion):
                    self._raise_if_failed(item)
                    return
                if item is not None:
                    yield item
                    continue
                await event.wait()
                event.clear()
        finally:
            with self._cond:
                self._waiters.remove((loop, event))
            if not self.done:
                self.cancel()
