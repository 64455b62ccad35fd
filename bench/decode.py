"""Decode speed through Hearth's LangChain LLM (`astream`) against raw llama-cpp-python streaming.

Same model file, context size, prompt, thread count, greedy sampling, token count; each side runs in
processes of its own that alternate, warm-up first, medians reported. Prints JSON; `ratio` is Hearth's
decode tok/s over llama-cpp-python's (target ≥ 1.0).

`--device` (default: $HEARTH_DEVICE, else auto) is Hearth's; llama-cpp-python gets the same layers on
the same GPU. `--backend torch` adds a third side: the same LangChain LLM on the torch engine (the GGUF
dequantized by transformers, f32 on the CPU, same thread count), reported beside llama.cpp with its
ratio to it.

    .venv/bin/python bench/decode.py [--model default] [--device auto] [--tokens 256] [--runs 5]
                                     [--rounds 2] [--backend torch]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time

from llama_cpp import Llama

from llm import HearthLLM
from native import load_engine

PROMPT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"


def decode_rate(stamps: list[float]) -> float:
    """Tokens per second after the first token (prefill excluded), from arrival times of tokens."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def run_raw(llama: Llama, tokens: int) -> float:
    stamps = []
    for _chunk in llama.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True):
        stamps.append(time.perf_counter())
    return decode_rate(stamps)


async def run_hearth(llm: HearthLLM, tokens: int) -> float:
    stamps = []
    async for delta in llm.astream(PROMPT):
        if delta:
            stamps.append(time.perf_counter())
    return decode_rate(stamps)


def child(args: argparse.Namespace) -> dict:
    """One side's rates, measured in a process of its own, as its users run it."""
    if args.child in ("hearth", "torch"):
        if args.child == "torch":
            engine = load_engine(args.model, args.device, backend="torch", n_threads=args.threads)
        else:
            engine = load_engine(args.model, args.device)
        llm = HearthLLM(
            engine=engine,
            temperature=0.0,
            max_new_tokens=args.tokens,
            repetition_penalty=1.0,
            top_k=0,
            top_p=1.0,
        )
        produced = llm.generate([PROMPT]).generations[0][0].generation_info["completion_tokens"]
        asyncio.run(run_hearth(llm.model_copy(update={"max_new_tokens": 16}), 16))  # warm-up
        rates = [asyncio.run(run_hearth(llm, args.tokens)) for _ in range(args.runs)]
        same = {"path": str(engine.info.path), "n_ctx": engine.n_ctx, "threads": engine.n_threads}
        same["device"] = str(engine.device)
        if args.child == "hearth":  # the raw side gets the same layers on the same GPU
            same["offload"] = engine.offload.model_params()
        return {**same, "tokens": produced, "rates": rates}
    # The engine's model file, context size and thread count, as the hearth child reported them.
    raw = Llama(
        args.path,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        verbose=False,
        **json.loads(args.offload),
    )
    usage = raw.create_completion(PROMPT, max_tokens=args.tokens, temperature=0.0)["usage"]
    run_raw(raw, 16)  # warm-up
    return {
        "tokens": usage["completion_tokens"],
        "rates": [run_raw(raw, args.tokens) for _ in range(args.runs)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default=os.environ.get("HEARTH_DEVICE", "auto"))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5, help="runs per side, spread over --rounds processes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--backend", choices=("llama.cpp", "torch"), default="llama.cpp", help="torch: add the torch engine"
    )
    parser.add_argument("--child", choices=("hearth", "raw", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--n-ctx", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--offload", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    # Two llama.cpp contexts in one process slow each other down (each calling thread gets its own
    # OpenMP team, whose idle threads spin on the same cores: measured 75 tok/s for the engine alone
    # on gemma-3-270m against 59 with an idle llama-cpp-python Llama beside it). So each side runs in
    # processes of its own, alternating, so that drift in machine load hits both sides alike.
    per_round = max(1, -(-args.runs // args.rounds))
    sides = ("hearth", "raw", "torch") if args.backend == "torch" else ("hearth", "raw")
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            command = [sys.executable, __file__, "--child", side, "--model", args.model]
            command += ["--device", args.device]
            command += ["--tokens", str(args.tokens), "--runs", str(per_round)]
            if side == "torch":
                command += ["--threads", str(results["hearth"][0]["threads"])]
            if side == "raw":
                first = results["hearth"][0]
                command += [
                    "--path",
                    first["path"],
                    "--n-ctx",
                    str(first["n_ctx"]),
                    "--threads",
                    str(first["threads"]),
                    "--offload",
                    json.dumps(first["offload"]),
                ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            results[side].append(json.loads(out.strip().splitlines()[-1]))
    hearth_rates = [r for res in results["hearth"] for r in res["rates"]]
    raw_rates = [r for res in results["raw"] for r in res["rates"]]
    first = results["hearth"][0]
    result = {
        "bench": "decode",
        "model": Path(first["path"]).name,
        "device": first["device"],
        "threads": first["threads"],
        "tokens": {"hearth": first["tokens"], "llama_cpp_python": results["raw"][0]["tokens"]},
        "processes": "one per side and round",
        "hearth_langchain_astream_tok_s": round(statistics.median(hearth_rates), 1),
        "llama_cpp_python_stream_tok_s": round(statistics.median(raw_rates), 1),
        "ratio": round(statistics.median(hearth_rates) / statistics.median(raw_rates), 3),
        "target_ratio": 1.0,
    }
    if "torch" in results:
        torch_rates = [r for res in results["torch"] for r in res["rates"]]
        result["tokens"]["hearth_torch"] = results["torch"][0]["tokens"]
        result["torch_device"] = results["torch"][0]["device"]
        result["hearth_torch_langchain_astream_tok_s"] = round(statistics.median(torch_rates), 1)
        result["torch_over_llama_cpp_ratio"] = round(
            statistics.median(torch_rates) / statistics.median(hearth_rates), 3
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
