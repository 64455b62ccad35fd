"""One request in flight: its slot, sampler chain, text assembly, counters and clock readings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from native.detok import TextAssembler
from native.llama import SamplerChain
from native.sampling import SamplingParams
from native.slots import Slot
from native.stream import Completion, Stream, Timings, Usage


@dataclass
class Request:
    tokens: list[int]
    sampling: SamplingParams
    session: str | None
    stream: Stream
    submitted: float = field(default_factory=time.perf_counter)
    user: str | None = None
    """Whose request it is: cached states are only shared between requests of the same user."""
    followed_by: list[int] = field(default_factory=list)
    """Tokens the session's next prompt will almost surely carry after this reply (the chat template's
    turn separator): computed into the cache once the session has been idle a moment."""


class Active:
    """A request that holds a slot: prefilling from `cursor`, then decoding one token per step."""

    def __init__(
        self, request: Request, slot: Slot, sampler: SamplerChain, reused: int, source: str | None = None
    ) -> None:
        self.request = request
        self.slot = slot
        self.sampler = sampler
        self.text = TextAssembler(request.sampling.stop)
        self.reused = reused
        self.source = source  # where the reused tokens came from: "slot", "ram", "disk"
        self.cursor = reused  # next prompt position to compute
        self.next_token: int | None = None  # sampled, to be decoded in the next step
        # Sampled, the end-of-generation token not among them: the stream's own list, so that its
        # reader sees each id as its text arrives.
        self.generated = request.stream.tokens
        self.started = time.perf_counter()
        self.prefilled: float | None = None
        self.first: float | None = None

    @property
    def prompt(self) -> list[int]:
        return self.request.tokens

    @property
    def prefilling(self) -> bool:
        return self.cursor < len(self.request.tokens)

    @property
    def n_gen(self) -> int:
        return len(self.generated)

    @property
    def remaining(self) -> int:
        """Tokens it may still generate."""
        return self.request.sampling.max_new_tokens - self.n_gen

    def completion(self, finish: str, error: str | None = None) -> Completion:
        ended = time.perf_counter()
        prefilled = self.prefilled or ended
        computed = self.cursor - self.reused
        return Completion(
            text=self.text.text,
            finish_reason=finish,  # type: ignore[arg-type]
            usage=Usage(len(self.prompt), self.reused, self.n_gen, self.source if self.reused else None),
            timings=Timings(
                time_to_first_token=(self.first or ended) - self.request.submitted,
                prefill_tokens_per_s=computed / max(prefilled - self.started, 1e-9),
                decode_tokens_per_s=(self.n_gen - 1) / (ended - self.first)
                if self.first and self.n_gen > 1
                else 0.0,
                queued_s=self.started - self.request.submitted,
            ),
            error=error,
            token_ids=tuple(self.generated),
        )
