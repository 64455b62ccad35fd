"""What `engine.submit` returns: text deltas for sync and async consumers, ending in a `Completion`.

The engine's thread produces; any number of threads or event loops consume. Consumers block on a
condition (sync) or an asyncio.Event woken with `call_soon_threadsafe` (async): nobody polls, and an
async consumer's loop is woken only while it waits, not for every delta it will read anyway.
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
    cached_from: str | None = None
    """Where the cached tokens came from: "slot" (the KV cache in use), "ram" or "disk" (the cache
    tiers: restored into a slot first), None when nothing was cached."""

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
    token_ids: tuple[int, ...] | None = None
    """The generated tokens as sampled (the end-of-generation token not among them): the text
    re-tokenized need not give them back. None from engines that do not say (a remote server)."""


class Stream:
    """Iterable and async-iterable over text deltas of one generation; `cancel()` stops it."""

    def __init__(self) -> None:
        self._deltas: deque[str] = deque()
        self._completion: Completion | None = None
        self._cond = threading.Condition()  # wakes sync iterators on every delta
        self._done = threading.Event()  # wakes `result()` waiters once, at the end
        self._waiters: list[_AsyncWaiter] = []
        self._cancel = threading.Event()
        self.tokens: list[int] = []
        """The ids of the tokens generated so far, each added just before its text is pushed (a local
        engine's; a remote one sends text only). The end-of-generation token is not among them."""
        self.queue_position: int | None = None
        """1 for the next request to get a slot, 2 for the one after...; None while it has one (or
        until the engine has looked at its queue: at its next step)."""

    # -- producer side: the engine's thread, a remote engine's reader, or a chain's token callbacks --
    # One producer pushes deltas, then finishes once.

    def push(self, delta: str) -> None:
        if delta:
            with self._cond:
                self._deltas.append(delta)
            self._wake(ending=False)

    def finish(self, completion: Completion) -> None:
        self.queue_position = None
        with self._cond:
            self._completion = completion
        self._done.set()
        self._wake(ending=True)

    def _wake(self, ending: bool) -> None:
        with self._cond:
            self._cond.notify_all()
            waking = [w for w in self._waiters if w.armed is _ANY or (ending and w.armed is _END)]
            for waiter in waking:
                waiter.armed = None  # one wake per wait: the loop is not called again for nothing
        for waiter in waking:
            # A closed loop means that consumer is gone: nobody to wake.
            with contextlib.suppress(RuntimeError):
                waiter.loop.call_soon_threadsafe(waiter.event.set)

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

    def ajoined(self, interval: float = 0.0) -> AsyncIterator[str]:
        """Async iteration where each item joins every delta that arrived since the previous one: a
        consumer slower than the engine (a network client) gets fewer, larger pieces instead of
        falling further behind one delta at a time.

        `interval`: at least this many seconds between items (the first comes at once, and the end
        of the generation cuts a pause short). Each item then holds what the pause gathered: a network
        stream sends a few events a second fewer, and on a small machine every event costs the server
        and its client CPU time that generation would otherwise use."""
        return self._aiter(joined=True, interval=interval)

    async def _aiter(self, joined: bool, interval: float = 0.0) -> AsyncIterator[str]:
        waiter = _AsyncWaiter(asyncio.get_running_loop())
        with self._cond:
            self._waiters.append(waiter)
        try:
            while True:
                with self._cond:
                    item = self._next_item(joined)
                    if item is None:
                        waiter.arm(_ANY)
                if isinstance(item, Completion):
                    self._raise_if_failed(item)
                    return
                if item is None:
                    await waiter.event.wait()
                    continue
                yield item
                if interval > 0:
                    await self._pause(waiter, interval)
        finally:
            with self._cond:
                self._waiters.remove(waiter)
            if not self.done:
                self.cancel()

    async def _pause(self, waiter: _AsyncWaiter, seconds: float) -> None:
        """Sleep `seconds`, or less if the generation ends: its last words are not held back."""
        with self._cond:
            if self._completion is not None:
                return
            waiter.arm(_END)
        try:
            async with asyncio.timeout(seconds):
                await waiter.event.wait()
        except TimeoutError:
            pass
        finally:
            with self._cond:
                waiter.armed = None


_ANY, _END = "any", "end"  # what an async consumer waits for: any delta, or only the end


class _AsyncWaiter:
    """One async consumer's wake-up call: its loop and event, and what it is waiting for (None while
    it is busy, so deltas that arrive meanwhile wake nothing)."""

    __slots__ = ("loop", "event", "armed")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.armed: str | None = None

    def arm(self, what: str) -> None:
        """Call with the stream's lock held, after finding nothing to read."""
        self.event.clear()
        self.armed = what
