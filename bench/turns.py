"""Time to first token across a 10-turn conversation: Hearth's per-session caches against raw
llama-cpp-python (`Llama`, which caches one sequence), alone and with 4 conversations interleaved
turn by turn. Same model, template, messages and greedy replies, measured side by side in one run.

Prints JSON; `ratio` is the median TTFT of turn 10 over that of turn 1 (targets: ≤ 1.3 alone, ≤ 1.5
interleaved), over `--repeats` rounds (3) of different conversations: a first turn takes tens of
milliseconds, so one sample of it moves with every scheduler tick. `cached_share` is how much of the
last turn's prompt came from the cache (Hearth only).

Hearth's turns pass the template's turn separator as `followed_by`, as the Chainlit app's chain does:
a session idle while others are answered gets it computed ahead. `--no-follow-ups` leaves it out.
Turns are sent back to back, with no time to read or type.

    .venv/bin/python bench/turns.py [--model default] [--turns 10] [--reply-tokens 64] [--repeats 3]
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
import subprocess
import time

from llama_cpp import Llama

import prompts
from native import Engine, SamplingParams, load_engine

QUESTIONS = [
    "Tell me about cats.",
    "What do they eat?",
    "How long do they live?",
    "Are they good pets?",
    "What about dogs?",
    "Which is smarter?",
    "Tell me a story about both.",
    "What happened next?",
    "How does it end?",
    "Give it a title.",
]


LAST_TURN_CACHE: list[float] = []


def hearth_turn(
    engine: Engine, text: str, session: str, tokens: int, follow: str | None
) -> tuple[float, str]:
    sampling = SamplingParams(temperature=0, max_new_tokens=tokens)
    completion = engine.submit(text, sampling, session=session, followed_by=follow)
    done = completion.result()
    LAST_TURN_CACHE.append(done.usage.cached_tokens / done.usage.prompt_tokens)
    return done.timings.time_to_first_token, done.text


def raw_turn(llama: Llama, text: str, session: str, tokens: int) -> tuple[float, str]:
    started, first, parts = time.perf_counter(), None, []
    for chunk in llama.create_completion(text, max_tokens=tokens, temperature=0.0, stream=True):
        first = first or time.perf_counter()
        parts.append(chunk["choices"][0]["text"])
    return (first or time.perf_counter()) - started, "".join(parts)


def conversations(
    run_turn, template, n_conversations: int, turns: int, tokens: int, repeats: int
) -> list[list[float]]:
    """TTFT of every turn of every conversation, the conversations of a round advancing turn by turn
    together; each round has conversations of its own (new labels, new sessions)."""
    ttfts: list[list[float]] = []
    for round_ in range(repeats):
        first = round_ * n_conversations
        ttfts += one_round(run_turn, template, range(first, first + n_conversations), turns, tokens)
    return ttfts


def one_round(run_turn, template, labels: range, turns: int, tokens: int) -> list[list[float]]:
    histories: list[list[dict]] = [[] for _ in labels]
    ttfts: list[list[float]] = [[] for _ in labels]
    for turn in range(turns):
        for c, label in enumerate(labels):
            histories[c].append({"role": "user", "content": f"({label}) {QUESTIONS[turn % len(QUESTIONS)]}"})
            text = prompts.render(histories[c], template).text
            LAST_TURN_CACHE.clear()
            ttft, reply = run_turn(text, f"conversation-{label}", tokens)
            ttfts[c].append(ttft)
            histories[c].append({"role": "assistant", "content": reply})
    return ttfts


def ratio(ttfts: list[list[float]]) -> dict:
    first = statistics.median(t[0] for t in ttfts)
    last = statistics.median(t[-1] for t in ttfts)
    return {
        "turn1_ttft_ms": round(first * 1000, 1),
        "last_turn_ttft_ms": round(last * 1000, 1),
        "ratio": round(last / first, 2),
        "samples": len(ttfts),
        # The curve in between: how much of the growth is already there at turn 2 (the new tokens of a
        # turn: separator, question, header) and how much comes with the history.
        "ttft_ms_by_turn": [
            round(statistics.median(t[i] for t in ttfts) * 1000, 1) for i in range(len(ttfts[0]))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument(
        "--device",
        default=os.environ.get("HEARTH_DEVICE", "auto"),
        help="Hearth's, and llama-cpp-python's layers",
    )
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--reply-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-only", action="store_true", help="print llama-cpp-python's figures only")
    parser.add_argument("--no-follow-ups", action="store_true", help="Hearth without `followed_by`")
    args = parser.parse_args()

    engine = load_engine(args.model, args.device)
    info = engine.info
    template = prompts.template_for(
        chat_template=info.chat_template,
        architecture=info.architecture,
        model_name=info.name,
        eos_token=info.eos_token,
        bos_token=info.bos_token,
    )
    if args.baseline_only:
        llama = Llama(
            str(info.path),
            n_ctx=engine.n_ctx,
            n_threads=engine.n_threads,
            n_threads_batch=engine.n_threads,
            verbose=False,
            **engine.offload.model_params(),  # the same layers on the same GPU as Hearth's
        )
        raw = lambda text, session, tokens: raw_turn(llama, text, session, tokens)  # noqa: E731
        raw("warm up", "w", 4)
        runs = {
            n: ratio(conversations(raw, template, n, args.turns, args.reply_tokens, args.repeats))
            for n in (1, 4)
        }
        print(json.dumps(runs))
        return
    # llama-cpp-python runs in a process of its own: two llama.cpp thread pools in one process slow
    # each other down.
    baseline = json.loads(
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--baseline-only",
                "--model",
                args.model,
                "--device",
                args.device,
                "--turns",
                str(args.turns),
                "--reply-tokens",
                str(args.reply_tokens),
                "--repeats",
                str(args.repeats),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    follow = None if args.no_follow_ups else prompts.turn_separator(template)
    hearth = lambda text, session, tokens: hearth_turn(engine, text, session, tokens, follow)  # noqa: E731
    hearth("warm up", "w", 4)
    result = {
        "bench": "turns",
        "model": info.path.name,
        "device": str(engine.device),
        "turns": args.turns,
        "threads": engine.n_threads,
        "followed_by": follow,
    }
    for n in (1, 4):
        figures = ratio(conversations(hearth, template, n, args.turns, args.reply_tokens, args.repeats))
        figures["last_turn_cached_share"] = round(LAST_TURN_CACHE[-1], 3)
        figures["follow_ups"] = engine.stats()["follow_ups_total"]
        result["alone" if n == 1 else f"{n}_interleaved"] = {
            "hearth": figures,
            "llama_cpp_python": baseline[str(n)],
            "target_ratio": 1.3 if n == 1 else 1.5,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
