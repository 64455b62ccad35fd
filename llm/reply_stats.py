"""The one-line summary shown under each reply: tokens, cache reuse, speed, context, why it ended."""

from __future__ import annotations

from typing import Any

_ENDINGS = {
    "length": "stopped at the Max New Tokens limit",
    "cancelled": "stopped by you",
    "error": "failed",
}


def format_stats(metadata: dict[str, Any], context_size: int) -> str:
    """E.g. '35 prompt tokens (30 cached) · 64 generated · first token 0.12 s · 118.2 tok/s ·
    context 99/4096 · stopped at the Max New Tokens limit'. Empty when nothing was generated."""
    if "completion_tokens" not in metadata:
        return ""
    prompt, cached = metadata["prompt_tokens"], metadata["cached_tokens"]
    generated = metadata["completion_tokens"]
    parts = [
        f"{prompt} prompt tokens ({cached} cached)",
        f"{generated} generated",
        f"first token {metadata['time_to_first_token']:.2f} s",
        f"{metadata['decode_tokens_per_s']:.1f} tok/s",
        f"context {prompt + generated}/{context_size}",
    ]
    if ending := _ENDINGS.get(metadata.get("finish_reason", "")):
        parts.append(ending)
    return " · ".join(parts)
