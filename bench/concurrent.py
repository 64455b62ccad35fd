"""Aggregate decode throughput with 1, 2, 4 and 8 concurrent streams through Hearth's scheduler, against
a plain low-level llama.cpp batch loop (every sequence decoded in one llama_decode per step, no
scheduler) on the same model, measured in one run. Also reports resident memory with 8 sessions.

Prints JSON. Targets: 8 streams ≥ 1.8× one stream, every stream complete; resident memory with 8
sessions ≤ model file + KV cache + 300 MiB.

Each figure is the median of `--runs` runs (3): one run of one stream is a second or two, and a
scheduler tick of the machine moves it by several percent.

    .venv/bin/python bench/concurrent.py [--model default] [--device auto] [--tokens 128] [--runs 3]

`--device` (default: $HEARTH_DEVICE, else auto) is Hearth's; the reference loop gets the same layers.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import itertools
import json
import os
import subprocess
import threading
import time

import llama_cpp as C

from native import SamplingParams, load_engine
from native.hardware import default_threads

PROMPT = "<|im_start|>user\nWrite a long story about dragon number {i}.<|im_end|>\n<|im_start|>assistant\n"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


_runs = itertools.count()


def hearth_run(engine, n: int, tokens: int) -> dict:
    params = [SamplingParams(temperature=0.8, seed=i, max_new_tokens=tokens) for i in range(n)]
    started = time.perf_counter()
    run = next(_runs)  # fresh sessions: no run starts from another's cache
    streams = [engine.submit(PROMPT.format(i=i), params[i], session=f"bench-{run}-{i}") for i in range(n)]
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.result())) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    generated = sum(r.usage.completion_tokens for r in results)
    return {
        "streams": n,
        "tokens": generated,
        "tok_s": round(generated / elapsed, 1),
        "complete": all(r.finish_reason in ("stop", "length") for r in results),
    }


@C.llama_log_callback
def _silent(level, text, user_data):  # the reference loop's llama.cpp log is not ours to print
    pass


def raw_batch_loop(path: Path, n: int, tokens: int, threads: int, offload: dict) -> dict:
    """The reference: prefill n prompts, then one llama_decode of n tokens per step, greedy, no Python
    beyond filling the batch. `offload`: Hearth's llama_model_params for the device (layers, GPU)."""
    mparams = C.llama_model_default_params()
    for name, value in offload.items():
        setattr(mparams, name, value)
    model = C.llama_model_load_from_file(str(path).encode(), mparams)
    vocab = C.llama_model_get_vocab(model)
    C.llama_log_set(_silent, None)
    cparams = C.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_seq_max = 1024 * n, 512, n
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.kv_unified = False
    ctx = C.llama_init_from_model(model, cparams)
    batch = C.llama_batch_init(512, 0, 1)
    sampler = C.llama_sampler_init_greedy()

    def put(i, token, pos, seq, logits):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
        batch.seq_id[i][0], batch.logits[i] = seq, logits

    started = time.perf_counter()
    positions, last = [], []
    for seq in range(n):
        text = PROMPT.format(i=seq).encode()
        buf = (C.llama_token * 256)()
        count = C.llama_tokenize(vocab, text, len(text), buf, 256, True, True)
        for j in range(count):
            put(j, buf[j], j, seq, j == count - 1)
        batch.n_tokens = count
        C.llama_decode(ctx, batch)
        last.append(C.llama_sampler_sample(sampler, ctx, count - 1))
        positions.append(count)
    for _ in range(tokens - 1):
        for seq in range(n):
            put(seq, last[seq], positions[seq], seq, True)
            positions[seq] += 1
        batch.n_tokens = n
        C.llama_decode(ctx, batch)
        last = [C.llama_sampler_sample(sampler, ctx, seq) for seq in range(n)]
    elapsed = time.perf_counter() - started
    C.llama_sampler_free(sampler)
    C.llama_batch_free(batch)
    C.llama_free(ctx)
    C.llama_model_free(model)
    return {"streams": n, "tokens": n * tokens, "tok_s": round(n * tokens / elapsed, 1)}


def median_run(runs: list[dict]) -> dict:
    """The run with the median tok/s, annotated with every run's figure."""
    ordered = sorted(runs, key=lambda r: r["tok_s"])
    middle = dict(ordered[len(ordered) // 2])
    middle["runs_tok_s"] = [r["tok_s"] for r in runs]
    middle["complete"] = all(r.get("complete", True) for r in runs)
    return middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default=os.environ.get("HEARTH_DEVICE", "auto"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raw-only", action="store_true", help="print the reference loop's figures only")
    args = parser.parse_args()
    if args.raw_only:
        probe = load_engine(args.model, args.device, parallel=1)
        path, offload = probe.info.path, probe.offload.model_params()
        probe.close()  # its weights would share the GPU (or the cores) with the loop's
        threads = default_threads()
        print(
            json.dumps(
                [
                    median_run(
                        [raw_batch_loop(path, n, args.tokens, threads, offload) for _ in range(args.runs)]
                    )
                    for n in (1, 8)
                ]
            )
        )
        return
    # The reference runs in a process of its own: two llama.cpp thread pools in one process slow
    # each other down, which would flatter Hearth.
    raw = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--raw-only", "--model", args.model, "--tokens", str(args.tokens)]
            + ["--runs", str(args.runs), "--device", args.device],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    engine = load_engine(args.model, args.device, parallel=8)
    hearth_run(engine, 2, 8)  # warm-up
    hearth = [
        median_run([hearth_run(engine, n, args.tokens) for _ in range(args.runs)]) for n in (1, 2, 4, 8)
    ]
    stats = engine.stats()
    memory = {
        "rss_mib": round(rss_bytes() / 2**20),
        "model_file_mib": round(engine.info.file_size / 2**20),
        "kv_cache_mib": round(stats["kv_cache_bytes"] / 2**20),
    }
    memory["budget_mib"] = memory["model_file_mib"] + memory["kv_cache_mib"] + 300
    memory["within_budget"] = memory["rss_mib"] <= memory["budget_mib"]
    print(
        json.dumps(
            {
                "bench": "concurrent",
                "model": engine.info.path.name,
                "device": str(engine.device),
                "threads": engine.n_threads,
                "hearth": hearth,
                "hearth_8_over_1": round(hearth[-1]["tok_s"] / hearth[0]["tok_s"], 2),
                "raw_batch_loop": raw,
                "raw_8_over_1": round(raw[-1]["tok_s"] / raw[0]["tok_s"], 2),
                "hearth_8_over_raw_8": round(hearth[-1]["tok_s"] / raw[-1]["tok_s"], 2),
                "memory_with_8_sessions": memory,
                "targets": {"hearth_8_over_1": ">= 1.8", "memory": "rss <= model + kv + 300 MiB"},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
