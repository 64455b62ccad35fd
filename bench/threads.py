"""Decode speed with Hearth's default thread count (the physical cores) against llama-cpp-python's own
default (half the logical cores: one thread on a 2-core machine), same model, prompt and run.

Prints JSON; `ratio` is default-threads tok/s over half-the-logical-cores tok/s.

    .venv/bin/python bench/threads.py [--model default] [--tokens 128] [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import statistics

from native import SamplingParams, load_engine
from native.engine import Engine

PROMPT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"


def rate(engine: Engine, tokens: int) -> float:
    params = SamplingParams(temperature=0, max_new_tokens=tokens)
    return engine.submit(PROMPT, params).result().timings.decode_tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    ours = load_engine(args.model)
    half = Engine(ours.info, ours.device, n_ctx=ours.n_ctx, n_threads=max(1, (os.cpu_count() or 2) // 2))
    rate(ours, 8), rate(half, 8)  # warm-up
    ours_rates, half_rates = [], []
    for _ in range(args.runs):
        ours_rates.append(rate(ours, args.tokens))
        half_rates.append(rate(half, args.tokens))
    half.close()
    print(
        json.dumps(
            {
                "bench": "threads",
                "model": ours.info.path.name,
                "hearth_default_threads": ours.n_threads,
                "half_logical_threads": half.n_threads,
                "hearth_default_tok_s": round(statistics.median(ours_rates), 1),
                "half_logical_tok_s": round(statistics.median(half_rates), 1),
                "ratio": round(statistics.median(ours_rates) / statistics.median(half_rates), 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
