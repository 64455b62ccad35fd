"""What is shown under each reply: a quiet line (speed, first token, cache reuse), and every figure
(model, tokens, cache reuse and where it came from, speed, context, why it ended) one click away."""

from __future__ import annotations

from typing import Any

_ENDINGS = {
    "length": "stopped at the Max New Tokens limit",
    "cancelled": "stopped by you",
    "error": "failed",
}


_FROM = {"ram": " from memory", "disk": " from disk"}  # "slot": the cache in use, said by "cached"


def format_stats(metadata: dict[str, Any], context_size: int) -> str:
    """E.g. 'SmolLM2-135M-Instruct.Q4_1 · 35 prompt tokens (30 cached) · 64 generated · first token
    0.12 s · 118.2 tok/s · context 99/4096 · stopped at the Max New Tokens limit'. Empty when nothing
    was generated."""
    return " · ".join(stats_details(metadata, context_size))


def quiet_line(metadata: dict[str, Any]) -> str:
    """E.g. '118 tok/s · 0.12 s to first token · 30 of 35 cached': what a glance wants. Empty when
    nothing was generated."""
    if "completion_tokens" not in metadata:
        return ""
    return (
        f"{metadata['decode_tokens_per_s']:.0f} tok/s · {metadata['time_to_first_token']:.2f} s to first "
        f"token · {metadata['cached_tokens']} of {metadata['prompt_tokens']} cached"
    )


def stats_details(metadata: dict[str, Any], context_size: int) -> list[str]:
    """Every figure of a reply, one phrase each (the parts of `format_stats`); empty when nothing was
    generated."""
    if "completion_tokens" not in metadata:
        return []
    prompt, cached = metadata["prompt_tokens"], metadata["cached_tokens"]
    generated = metadata["completion_tokens"]
    parts = [
        *([metadata["model_name"]] if metadata.get("model_name") else []),
        f"{prompt} prompt tokens ({cached} cached{_FROM.get(metadata.get('cached_from') or '', '')})",
        f"{generated} generated",
        f"first token {metadata['time_to_first_token']:.2f} s",
        f"{metadata['decode_tokens_per_s']:.1f} tok/s",
        f"context {prompt + generated}/{context_size}",
    ]
    if ending := _ENDINGS.get(metadata.get("finish_reason", "")):
        parts.append(ending)
    return parts


def context_is_full(metadata: dict[str, Any], context_size: int, margin: float = 0.9) -> bool:
    """True when the prompt and reply took at least `margin` of the context: the next turn will not fit
    without dropping the oldest messages."""
    if "completion_tokens" not in metadata:
        return False
    return metadata["prompt_tokens"] + metadata["completion_tokens"] >= margin * context_size
