"""Hearth's CPU kernels (native/patches) against llama.cpp's own, `llama_decode` by `llama_decode`.

Times one `llama_decode` of n new tokens after p cached ones (one sequence, the engine's thread count),
with the kernels on and with them off (llama.cpp's stock kernels, same library), in child processes that
alternate, medians reported. `--kernel` picks what "off" turns off: the flash-attention kernel
(`HEARTH_FA_OFF=1`, the default), the Q4_1 matmul kernel (`HEARTH_Q41_OFF=1`; the default model is
Q4_1), or both. Prints JSON; `speedup` is stock ms over Hearth ms (above 1 is faster). The shapes are a
chat's: a turn's prompt after a long history (19@830), one decode step deep in a chat (1@2000), a long
prompt (512@0).

`--clock cpu` times the process's CPU seconds instead of the wall clock: with `--threads 1` that is the
work itself, whatever else the machine is doing (wall times on a shared machine are not figures).

    .venv/bin/python bench/attention.py [--model default] [--kernel attention|matmul|both] [--rounds 2]
        [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import statistics
import subprocess
import time

SHAPES = [(1, 100), (1, 830), (1, 2000), (4, 830), (19, 0), (19, 830), (64, 830), (512, 0)]
# What each --kernel turns off for the "stock" runs.
SWITCHES = {
    "attention": ["HEARTH_FA_OFF"],
    "matmul": ["HEARTH_Q41_OFF"],
    "both": ["HEARTH_FA_OFF", "HEARTH_Q41_OFF"],
}


def child(model_name: str, repeats: int, threads: int | None, clock: str) -> dict[str, float]:
    from native.hardware import default_threads
    from native.llama import Batch, Context, Model
    from native.resolve import resolve_model

    model = Model(resolve_model(model_name))
    ctx = Context(model, n_ctx=4096, n_batch=512, n_seq_max=1, n_threads=threads or default_threads())
    now = time.process_time if clock == "cpu" else time.perf_counter
    batch = Batch(512)
    tokens = model.tokenize("The quick brown fox jumps over the lazy dog. " * 300, add_special=False)

    def once(n: int, p: int) -> float:
        ctx.forget(0)
        for start in range(0, p, 512):
            batch.clear()
            for i in range(start, min(p, start + 512)):
                batch.add(tokens[i], i, 0, i == p - 1)
            ctx.decode(batch)
        batch.clear()
        for i in range(n):
            batch.add(tokens[p + i], p + i, 0, i == n - 1)
        started = now()
        ctx.decode(batch)
        return (now() - started) * 1000

    return {f"{n}@{p}": statistics.median(once(n, p) for _ in range(repeats)) for n, p in SHAPES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--kernel", choices=sorted(SWITCHES), default="attention")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: the engine's")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.repeats, args.threads, args.clock)))
        return

    runs: dict[str, list[dict[str, float]]] = {"hearth": [], "stock": []}
    for _ in range(args.rounds):
        for kind in ("hearth", "stock"):
            env = {k: v for k, v in os.environ.items() if k not in SWITCHES["both"]}
            if kind == "stock":
                env.update(dict.fromkeys(SWITCHES[args.kernel], "1"))
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--model", args.model, "--repeats", str(args.repeats),
                 "--clock", args.clock, *(["--threads", str(args.threads)] if args.threads else [])],
                env=env, capture_output=True, text=True, check=True,
            )
            runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def median(kind: str, shape: str) -> float:
        return statistics.median(run[shape] for run in runs[kind])

    shapes = [f"{n}@{p}" for n, p in SHAPES]
    report = {
        "model": args.model,
        "kernel": args.kernel,
        "rounds": args.rounds,
        "threads": args.threads,
        "clock": args.clock,
        "ms": {kind: {s: round(median(kind, s), 2) for s in shapes} for kind in runs},
        "speedup": {s: round(median("stock", s) / median("hearth", s), 3) for s in shapes},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
