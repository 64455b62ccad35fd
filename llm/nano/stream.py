"""What `NanoLLM.generate` returns: the reply streaming token by token, its KV cache, and function calls.

The reply may span several engine requests: when a registered function's call is complete in the
output, the request is stopped, the function runs, its result is added to the reply, and generation
resumes from there in the same session (so the cache is reused, and only the result is prefilled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from llm.tools import Found, Function, find_call, run_call
from native import Completion, Engine, SamplingParams, Stream

MAX_FUNCTION_CALLS = 8
"""Calls run in one reply at most; a model stuck calling in a loop is stopped there."""


@dataclass
class KVCache:
    """A conversation's place in the engine: its session (which owns a slot's KV cache) and the
    tokens that cache holds as far as we know. The engine compares them with every new prompt and
    computes only what differs, so a stale record costs time, never correctness."""

    session: str
    tokens: list[int] = field(default_factory=list)
    followed_by: str | None = None
    """What the conversation's next prompt carries right after each reply (the template's turn
    separator): the engine computes it into the cache while the chat sits idle. None: nothing."""

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def truncate(self, length: int) -> None:
        """Keep the first `length` tokens (what a new prompt shares with this cache)."""
        del self.tokens[length:]

    def pop(self, count: int) -> None:
        """Drop the last `count` tokens."""
        self.truncate(max(0, len(self.tokens) - count))


class StreamingResponse:
    """Iterate for text as it is generated. `text` is the reply so far, `eos` turns True as the last
    piece is handed out, and `kv_cache` continues the conversation after it."""

    def __init__(
        self,
        engine: Engine,
        prompt: list[int],
        sampling: SamplingParams,
        kv_cache: KVCache,
        functions: Sequence[Function] = (),
    ) -> None:
        self.engine = engine
        self.prompt = prompt
        self.sampling = sampling
        self.kv_cache = kv_cache
        self.functions = {f.name: f for f in functions}
        self.text = ""
        self.eos = False
        self.completions: list[Completion] = []
        """One per engine request: a reply with function calls takes one request per call, plus one."""
        self.calls: list[tuple[str, str]] = []
        """(call as written, what was added to the reply) for each function call."""
        self._stop = False
        # Submitted now, so that a prompt the engine refuses (too long, queue full) raises here.
        self._stream: Stream | None = self._submit("", sampling.max_new_tokens)
        self._pieces = self._generate()

    # -- the consumer's side ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        # Hold one piece back so that `eos` is already True when the last one is handed out.
        pieces = self._pieces
        try:
            held = next(pieces, None)
            for piece in pieces:
                self.text += held  # type: ignore[operator]
                yield held  # type: ignore[misc]
                held = piece
            self.eos = True
            if held is not None:
                self.text += held
                yield held
        finally:
            pieces.close()  # a consumer that stops early (break, Ctrl-C) stops the generation too

    def wait(self) -> str:
        """Generate to the end without streaming; returns the whole reply."""
        for _ in self:
            pass
        return self.text

    def stop(self) -> None:
        """End the reply early (from any thread); iteration finishes after the piece in hand."""
        self._stop = True
        if self._stream is not None:
            self._stream.cancel()

    @property
    def completion(self) -> Completion | None:
        """The last engine request's Completion (finish reason, usage, timings)."""
        return self.completions[-1] if self.completions else None

    @property
    def stopped(self) -> bool:
        return self.eos

    def __del__(self) -> None:
        # A reply dropped without being read need not run to max_new_tokens.
        if getattr(self, "_stream", None) is not None:
            self._stream.cancel()

    # -- the engine's side --------------------------------------------------------------------------

    def _generate(self) -> Iterator[str]:
        """Pieces of the reply: engine deltas, cut where a function call ends, then its result."""
        reply, scanned, budget = "", 0, self.sampling.max_new_tokens
        stream = self._stream
        try:
            while stream is not None:
                found = None
                try:
                    for delta in stream:
                        if self._stop:
                            break
                        found = find_call(reply + delta, self.functions, scanned) if self.functions else None
                        if found is not None:
                            delta = delta[: max(0, found.end - len(reply))]  # what follows the call goes
                        reply += delta
                        if delta:
                            yield delta
                        if found is not None:
                            break
                finally:
                    # Stops the request after a call, a stop(), a break or Ctrl-C (no-op if it ended).
                    stream.cancel()
                    self._record(stream)
                budget -= self.completions[-1].usage.completion_tokens if self.completions else 0
                stream = None
                if found is not None and not self._stop:
                    inserted = self._run(found)
                    reply, scanned = reply + inserted, len(reply) + len(inserted)
                    yield inserted
                    if budget > 0 and len(self.calls) < MAX_FUNCTION_CALLS:
                        stream = self._stream = self._submit(reply, budget)
        finally:
            self.kv_cache.tokens = self._cached_tokens(reply)

    def _record(self, stream: Stream) -> None:
        """Keep the request's Completion; a cancelled one ends at the engine's next step."""
        # An engine this slow is reported by its own errors, not by this one.
        with contextlib.suppress(TimeoutError):
            self.completions.append(stream.result(timeout=60))

    def _cached_tokens(self, reply: str) -> list[int]:
        """The tokens the session's cache holds after this reply, as near as text can tell: the
        prompt and the reply, less the last token when the reply was cut at max_new_tokens (the
        engine samples that token but never computes it into the cache)."""
        tokens = self.prompt + self.engine.tokenize(reply, add_special=False)
        cut = self.completion is not None and self.completion.finish_reason == "length"
        return tokens[:-1] if cut and len(tokens) > len(self.prompt) else tokens

    def _submit(self, reply: str, budget: int) -> Stream:
        tokens = self.prompt + (self.engine.tokenize(reply, add_special=False) if reply else [])
        sampling = replace(self.sampling, max_new_tokens=budget)
        follow = self.kv_cache.followed_by
        return self.engine.submit(tokens, sampling, session=self.kv_cache.session, followed_by=follow)

    def _run(self, found: Found) -> str:
        """Run the call and say what it gave, closing its backticks first if the model opened them."""
        outcome = run_call(found.source, self.functions)
        closing = "`" if found.backticked else ""
        inserted = f"{closing} {outcome.text}" if outcome.ok else f"{closing} (error: {outcome.text})"
        self.calls.append((found.source, inserted))
        return inserted
