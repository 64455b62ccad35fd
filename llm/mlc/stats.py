"""Prefill and decode figures summed over a chat's generations, as MLC's `stats()` reports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from native import Completion


@dataclass
class RuntimeStats:
    """Totals since the last reset. Times come from the engine's own per-request rates, so they cover
    only the work done: prompt tokens found in the KV cache cost nothing and are counted apart."""

    prefill_tokens: int = 0
    """Prompt tokens computed."""
    cached_tokens: int = 0
    """Prompt tokens reused from the KV cache."""
    prefill_time: float = 0.0
    decode_tokens: int = 0
    """Tokens generated after each reply's first (the first comes out of the prefill)."""
    decode_time: float = 0.0
    completion_tokens: int = 0
    time_to_first_token: float = 0.0
    """Of the last generation."""
    generations: int = 0

    def add(self, completion: Completion) -> None:
        usage, timings = completion.usage, completion.timings
        computed = usage.prompt_tokens - usage.cached_tokens
        self.generations += 1
        self.cached_tokens += usage.cached_tokens
        self.completion_tokens += usage.completion_tokens
        self.time_to_first_token = timings.time_to_first_token
        if timings.prefill_tokens_per_s > 0:
            self.prefill_tokens += computed
            self.prefill_time += computed / timings.prefill_tokens_per_s
        decoded = usage.completion_tokens - 1
        if decoded > 0 and timings.decode_tokens_per_s > 0:
            self.decode_tokens += decoded
            self.decode_time += decoded / timings.decode_tokens_per_s

    @property
    def prefill_rate(self) -> float:
        return self.prefill_tokens / self.prefill_time if self.prefill_time else 0.0

    @property
    def decode_rate(self) -> float:
        return self.decode_tokens / self.decode_time if self.decode_time else 0.0

    def text(self) -> str:
        """MLC's one-line summary: "prefill: 3477.5 tok/s, decode: 153.6 tok/s"."""
        return f"prefill: {self.prefill_rate:.1f} tok/s, decode: {self.decode_rate:.1f} tok/s"

    def verbose(self) -> dict[str, Any]:
        return {
            "prefill": {
                "throughput": round(self.prefill_rate, 1),
                "total_tokens": self.prefill_tokens,
                "cached_tokens": self.cached_tokens,
                "total_time": round(self.prefill_time, 4),
            },
            "decode": {
                "throughput": round(self.decode_rate, 1),
                "total_tokens": self.decode_tokens,
                "total_time": round(self.decode_time, 4),
            },
            "completion_tokens": self.completion_tokens,
            "time_to_first_token": round(self.time_to_first_token, 4),
            "generations": self.generations,
        }
