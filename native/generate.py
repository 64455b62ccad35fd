"""One generation on one cached sequence: reuse the cached prefix, prefill the rest, decode.

Runs on the engine's worker thread only. One idea per method, in the order they happen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from native.detok import TextAssembler
from native.llama import Batch, Context, Model, SamplerChain
from native.stream import Completion, Timings, Usage

if TYPE_CHECKING:
    from native.engine import Request


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Generation:
    def __init__(
        self, model: Model, ctx: Context, batch: Batch, sampler: SamplerChain, request: Request, seq: int
    ) -> None:
        self.model, self.ctx, self.batch, self.sampler = model, ctx, batch, sampler
        self.request = request
        self.seq = seq
        self.params = request.sampling

    def run(self, cached: list[int], started: float) -> Completion:
        """Generate for the request; `cached` (the sequence's tokens in the KV cache) is updated in place."""
        tokens = self.request.tokens
        reused = self.prefill(cached, tokens)
        prefilled = time.perf_counter()
        if self.params.penalises:
            # Penalties look at recent tokens; the prompt's tail counts, as in llama.cpp's server.
            for token in tokens[-self.params.penalty_last_n :]:
                self.sampler.accept(token)
        text, finish, n_gen, first = self.decode(cached)
        ended = time.perf_counter()
        computed = len(tokens) - reused
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(len(tokens), reused, n_gen),
            timings=Timings(
                time_to_first_token=(first or ended) - self.request.submitted,
                prefill_tokens_per_s=computed / max(prefilled - started, 1e-9),
                decode_tokens_per_s=(n_gen - 1) / (ended - first) if first and n_gen > 1 else 0.0,
                queued_s=started - self.request.submitted,
            ),
        )

    def prefill(self, cached: list[int], tokens: list[int]) -> int:
        """Compute the KV cache for the tokens not already cached; return how many were reused."""
        reused = common_prefix(cached, tokens)
        if reused == len(tokens):
            reused -= 1  # everything is cached: replay the last token to get fresh logits
        if reused < len(cached) and not self.ctx.forget(self.seq, reused):
            self.ctx.forget(self.seq)  # this cache cannot be cut mid-way: start the sequence over
            reused = 0
        del cached[reused:]
        step = self.batch.capacity
        for start in range(reused, len(tokens), step):
            chunk = tokens[start : start + step]
            self.batch.fill(chunk, start, self.seq, logits_last=start + step >= len(tokens))
            self.ctx.decode(self.batch)
            cached.extend(chunk)
        return reused

    def decode(self, cached: list[int]) -> tuple[str, str, int, float | None]:
        """Sample until a stop: returns (text, finish_reason, tokens generated, time of first token)."""
        stream = self.request.stream
        text = TextAssembler(self.params.stop)
        n_gen, first, finish = 0, None, "length"
        while n_gen < self.params.max_new_tokens:
            if stream.cancelled:
                finish = "cancelled"
                break
            token = self.sampler.sample(self.ctx)
            first = first or time.perf_counter()
            if self.model.is_eog(token):
                finish = "stop"
                break
            n_gen += 1
            stream._push(text.feed(self.model.token_bytes(token)))
            if text.stopped:
                finish = "stop"
                break
            if n_gen == self.params.max_new_tokens:
                break
            if len(cached) + 1 >= self.ctx.n_ctx:
                break  # the context is full: finish_reason stays `length`
            self.batch.fill([token], len(cached), self.seq)
            self.ctx.decode(self.batch)
            cached.append(token)
        stream._push(text.flush())
        return text.text, finish, n_gen, first
