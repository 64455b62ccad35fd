"""Streams read side by side, the way concurrent clients read them: one reader thread a stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from native import EngineProtocol, SamplingParams


def assert_streams_run_side_by_side(
    engine: EngineProtocol, prompts: Sequence[str], sampling: SamplingParams, timeout: float
) -> None:
    """Submit every prompt at once and read each stream in a thread of its own: each completes, its
    streamed text is its completion's, and one generation loop served them together (every stream
    had its first token before any ended)."""
    submitted = time.perf_counter()
    streams = [engine.submit(prompt, sampling) for prompt in prompts]
    texts = ["" for _ in streams]
    ended = [0.0 for _ in streams]

    def read(i: int) -> None:
        texts[i] = "".join(streams[i])
        ended[i] = time.perf_counter()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(streams))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=timeout)
    completions = [s.result(timeout=1) for s in streams]
    for text, completion in zip(texts, completions, strict=True):
        assert completion.finish_reason in ("stop", "length")
        assert text == completion.text and completion.usage.completion_tokens > 0
    assert max(submitted + c.timings.time_to_first_token for c in completions) < min(ended)
