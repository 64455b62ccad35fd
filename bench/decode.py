"""Decode speed through Hearth's LangChain LLM (`astream`) against raw llama-cpp-python streaming.

Same model file, prompt, thread count, greedy sampling, token count; runs alternate, warm-up first,
medians reported. Prints JSON; `ratio` is Hearth's decode tok/s over llama-cpp-python's (target ≥ 1.0).

    .venv/bin/python bench/decode.py [--model default] [--tokens 256] [--runs 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import json
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    engine = load_engine(args.model)
    # The prompt makes the model talk past `tokens`; the JSON reports both counts so that is checked.
    hearth = HearthLLM(
        engine=engine, temperature=0.0, max_new_tokens=args.tokens, repetition_penalty=1.0, top_k=0, top_p=1.0
    )
    raw = Llama(
        str(engine.info.path),
        n_ctx=engine.n_ctx,
        n_threads=engine.n_threads,
        n_threads_batch=engine.n_threads,
        n_batch=512,
        verbose=False,
    )
    produced = hearth.generate([PROMPT]).generations[0][0].generation_info["completion_tokens"]
    raw_tokens = raw.create_completion(PROMPT, max_tokens=args.tokens, temperature=0.0)["usage"]
    run_raw(raw, 16)  # warm-up
    asyncio.run(run_hearth(hearth.model_copy(update={"max_new_tokens": 16}), 16))

    hearth_rates, raw_rates = [], []
    for _ in range(args.runs):  # alternate so that drift in machine load hits both sides alike
        raw_rates.append(run_raw(raw, args.tokens))
        hearth_rates.append(asyncio.run(run_hearth(hearth, args.tokens)))
    result = {
        "bench": "decode",
        "model": engine.info.path.name,
        "threads": engine.n_threads,
        "tokens": {"hearth": produced, "llama_cpp_python": raw_tokens["completion_tokens"]},
        "hearth_langchain_astream_tok_s": round(statistics.median(hearth_rates), 1),
        "llama_cpp_python_stream_tok_s": round(statistics.median(raw_rates), 1),
        "ratio": round(statistics.median(hearth_rates) / statistics.median(raw_rates), 3),
        "target_ratio": 1.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
