"""What the REST layer costs: decode speed through the server's SSE with the official `openai` client
against the engine driven directly, for one stream and for 8 concurrent streams; and the same pair for
llama-cpp-python's server against raw llama-cpp-python, both servers started side by side.

Every llama.cpp context lives in a process of its own (the two servers, and one worker per direct
baseline, driven over stdin): two thread pools in one process slow each other down. This process only
runs clients. Same model, threads, prompts and greedy sampling; warm-up first; runs alternate; medians.

Prints JSON. Targets: one SSE stream >= 0.97x the engine's decode tok/s; 8 concurrent SSE streams
>= 0.95x the aggregate tok/s of 8 direct engine streams.

    .venv/bin/python bench/rest.py [--model default] [--tokens 256] [--runs 3] [--stream-interval-ms MS]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)
# The tests' helpers (support.rest), by folder: a `tests` package installed by some dependency would
# shadow `tests.support`.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import json
import statistics
import subprocess
import threading
import time

import openai
from support.rest import ServerProcess, free_port

PROMPT = "<|im_start|>user\nWrite a long story about dragon number {i}.<|im_end|>\n<|im_start|>assistant\n"
STREAMS = 8


def decode_rate(stamps: list[float], tokens: int) -> float:
    """Tokens per second after the first one (prefill excluded), from the arrival times of the pieces."""
    return (tokens - 1) / (stamps[-1] - stamps[0])


# -- the direct baselines, each in a worker process ------------------------------------------------


def hearth_direct(engine, command: str, tokens: int) -> dict:
    from native import SamplingParams

    greedy = SamplingParams(temperature=0, max_new_tokens=tokens)
    if command == "single":
        stream, stamps = engine.submit(PROMPT.format(i=0), greedy), []
        for _ in stream:
            stamps.append(time.perf_counter())
        generated = stream.completion.usage.completion_tokens
        return {"tok_s": decode_rate(stamps, generated), "tokens": generated}
    # Each stream read token by token in a thread of its own, as the SSE side's clients read theirs:
    # on a small machine, waking a reader per token is part of serving streams, with or without HTTP.
    started = time.perf_counter()
    streams = [engine.submit(PROMPT.format(i=i), greedy) for i in range(STREAMS)]
    readers = [threading.Thread(target=lambda s=s: [None for _ in s]) for s in streams]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    generated = sum(s.result().usage.completion_tokens for s in streams)
    return {"tok_s": generated / (time.perf_counter() - started), "tokens": generated}


def llama_cpp_direct(llama, command: str, tokens: int) -> dict:
    """Raw llama-cpp-python; it serves one sequence, so 8 "concurrent" requests run one after another."""
    if command == "single":
        stamps = []
        for _chunk in llama.create_completion(
            PROMPT.format(i=0), max_tokens=tokens, temperature=0.0, stream=True
        ):
            stamps.append(time.perf_counter())
        return {"tok_s": decode_rate(stamps, len(stamps)), "tokens": len(stamps)}
    started, generated = time.perf_counter(), 0
    for i in range(STREAMS):
        reply = llama.create_completion(PROMPT.format(i=i), max_tokens=tokens, temperature=0.0)
        generated += reply["usage"]["completion_tokens"]
    return {"tok_s": generated / (time.perf_counter() - started), "tokens": generated}


def model_file(model: str) -> tuple[Path, int]:
    """The GGUF path and the context a Hearth engine gives each session by default (so both match)."""
    from native.engine import DEFAULT_CTX
    from native.gguf_info import inspect_gguf
    from native.resolve import resolve_model

    path = resolve_model(model)
    return path, min(inspect_gguf(path).context_length or DEFAULT_CTX, DEFAULT_CTX)


def worker(kind: str, model: str, threads: int) -> None:
    """Load once, then answer `single N` / `many N` lines from stdin with one JSON line each."""
    from native import load_engine

    if kind == "llama_cpp":
        from llama_cpp import Llama

        path, n_ctx = model_file(model)
        target = Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
        run = llama_cpp_direct
    else:
        target, run = load_engine(model, n_threads=threads, parallel=STREAMS), hearth_direct
    for line in sys.stdin:
        command, tokens = line.split()
        print(json.dumps(run(target, command, int(tokens))), flush=True)


class Worker:
    def __init__(self, kind: str, model: str, threads: int) -> None:
        args = [sys.executable, __file__, "--worker", kind, "--model", model, "--threads", str(threads)]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, command: str, tokens: int) -> dict:
        self.process.stdin.write(f"{command} {tokens}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# -- the servers and their SSE clients, in this process --------------------------------------------


class Server(ServerProcess):
    """A server subprocess on a free port (the tests' ServerProcess), ready once `ready_path` answers."""

    def __init__(self, args: list[str], ready_path: str) -> None:
        port = free_port()
        command = [sys.executable, "-m", *args, "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(command, port, ready_path, start_within=300)
        self.start()
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)
        self.model = self.client.models.list().data[0].id

    def stream(self, i: int, tokens: int, stamps: list[float] | None = None) -> int:
        """One greedy SSE completion; returns its token count (usage if sent, else one per chunk)."""
        chunks = self.client.completions.create(
            model=self.model,
            prompt=PROMPT.format(i=i),
            max_tokens=tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"repeat_penalty": 1.0},
        )
        pieces, usage = 0, None
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].text:
                pieces += 1
                if stamps is not None:
                    stamps.append(time.perf_counter())
            usage = chunk.usage or usage
        return usage.completion_tokens if usage else pieces

    def measure(self, command: str, tokens: int) -> dict:
        if command == "single":
            stamps: list[float] = []
            generated = self.stream(0, tokens, stamps)
            return {"tok_s": decode_rate(stamps, generated), "tokens": generated}
        counts: list[int] = []
        started = time.perf_counter()
        threads = [
            threading.Thread(target=lambda i=i: counts.append(self.stream(i, tokens))) for i in range(STREAMS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"tok_s": sum(counts) / (time.perf_counter() - started), "tokens": sum(counts)}

    def close(self) -> None:
        self.stop()


def compare(server: Server, direct: Worker, tokens: dict[str, int], runs: int) -> dict:
    """Alternating runs of SSE and direct, medians and their ratio, for one stream and for 8."""
    for command in ("single", "many"):  # warm-up: first-use costs stay out of the figures
        server.measure(command, 8)
        direct.ask(command, 8)
    result = {}
    for command, label in (("single", "one_stream"), ("many", f"{STREAMS}_streams")):
        sse, raw = [], []
        for _ in range(runs):
            sse.append(server.measure(command, tokens[command]))
            raw.append(direct.ask(command, tokens[command]))
        sse_rate = statistics.median(r["tok_s"] for r in sse)
        raw_rate = statistics.median(r["tok_s"] for r in raw)
        result[label] = {
            "sse_tok_s": round(sse_rate, 1),
            "direct_tok_s": round(raw_rate, 1),
            "ratio": round(sse_rate / raw_rate, 3),
            "runs": {
                "sse": [round(r["tok_s"], 1) for r in sse],
                "direct": [round(r["tok_s"], 1) for r in raw],
            },
            "tokens": {"sse": sse[-1]["tokens"], "direct": raw[-1]["tokens"]},
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per request")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default: physical cores)"
    )
    parser.add_argument(
        "--stream-interval-ms",
        type=int,
        default=None,
        help="Hearth's server's least time between two SSE events (default: the server's own)",
    )
    parser.add_argument("--worker", choices=["hearth", "llama_cpp"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    from llm.rest.settings import ServerSettings
    from native.hardware import default_threads

    threads = args.threads or default_threads()
    if args.worker:
        worker(args.worker, args.model, threads)
        return
    tokens = {"single": args.tokens, "many": args.tokens}
    path, n_ctx = model_file(args.model)
    hearth_args = ["llm.rest", "--model", args.model, "--parallel", str(STREAMS), "--threads", str(threads)]
    if args.stream_interval_ms is not None:
        hearth_args += ["--stream-interval-ms", str(args.stream_interval_ms)]
    llama_args = ["llama_cpp.server", "--model", str(path), "--n_ctx", str(n_ctx)]
    llama_args += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    llama_args += ["--interrupt_requests", "False"]  # else each new request cuts the running stream short
    results = {}
    for name, kind, server_args, ready in (
        ("hearth", "hearth", hearth_args, "/health"),
        ("llama_cpp_python", "llama_cpp", llama_args, "/v1/models"),
    ):
        server, direct = Server(server_args, ready), Worker(kind, args.model, threads)
        try:
            results[name] = compare(server, direct, tokens, args.runs)
        finally:
            server.close()
            direct.close()
    hearth, other = results["hearth"], results["llama_cpp_python"]
    print(
        json.dumps(
            {
                "bench": "rest",
                "model": path.name,
                "threads": threads,
                "hearth_stream_interval_ms": args.stream_interval_ms
                if args.stream_interval_ms is not None
                else ServerSettings.model_fields["stream_interval_ms"].default,
                "hearth_server": hearth,
                "llama_cpp_python_server": other,
                "hearth_sse_over_llama_cpp_python_sse": {
                    k: round(hearth[k]["sse_tok_s"] / other[k]["sse_tok_s"], 2) for k in hearth
                },
                "targets": {"one_stream": ">= 0.97", f"{STREAMS}_streams": ">= 0.95"},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
