"""The REST server under load: `--clients` concurrent clients for `--seconds`, each sending, at random,
streamed and plain chat requests, streams it hangs up on after two events, and malformed bodies.

Counts what came back: completed replies, truncated streams (a stream the client did not hang up on
that ended without its finish reason and [DONE]), 5xx answers (a busy engine's 503 `engine_busy` is
back-pressure, counted apart), the 4xx the malformed bodies must get. Then the server's RSS against
its RSS after the warm-up (less what the KV cache's RAM tier holds by design: `rss_growth` is what
grew beyond it), and whether every slot is free a moment after the last client stopped.

Prints JSON. Targets at 32 clients for 60 s: 0 truncated, 0 5xx, RSS growth <= 5%, every slot free.

    .venv/bin/python bench/load.py [--model default] [--clients 32] [--seconds 60]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import random
import tempfile
import threading
import time
from collections import Counter

import httpx

from bench.cache import Server, hearth

MALFORMED = [
    b"{not json",
    json.dumps({"model": "default", "messages": "hello"}).encode(),
    json.dumps(
        {"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}
    ).encode(),
    json.dumps({"model": "default", "messages": [{"role": "wizard", "content": "hi"}]}).encode(),
    json.dumps({"model": "default", "messages": [], "temperature": "hot"}).encode(),
]


def chat_body(rng: random.Random, stream: bool) -> dict:
    topic = rng.choice(["cats", "rivers", "the moon", "bread", "trains", "numbers"])
    return {
        "model": "default",
        "messages": [{"role": "user", "content": f"Tell me about {topic}, {rng.randrange(10**6)}."}],
        "max_tokens": rng.randrange(8, 48),
        "stream": stream,
    }


def client(url: str, until: float, seed: int, counts: Counter, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0, connect=10.0)) as http:
        while time.monotonic() < until:
            kind = rng.choices(["stream", "plain", "hang_up", "malformed"], weights=[4, 3, 2, 1])[0]
            outcome = one(http, rng, kind)
            with lock:
                counts[outcome] += 1


def one(http: httpx.Client, rng: random.Random, kind: str) -> str:
    try:
        if kind == "malformed":
            answer = http.post(
                "/v1/chat/completions",
                content=rng.choice(MALFORMED),
                headers={"content-type": "application/json"},
            )
            return "refused_4xx" if 400 <= answer.status_code < 500 else f"malformed_got_{answer.status_code}"
        if kind == "plain":
            answer = http.post("/v1/chat/completions", json=chat_body(rng, stream=False))
            if answer.status_code == 200:
                return "completed" if answer.json()["choices"][0]["finish_reason"] else "truncated"
            return classify(answer)
        with http.stream("POST", "/v1/chat/completions", json=chat_body(rng, stream=True)) as answer:
            if answer.status_code != 200:
                answer.read()
                return classify(answer)
            events, finished, done = 0, False, False
            for line in answer.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                events += 1
                event = json.loads(data)
                if "error" in event:
                    return "5xx"
                if event.get("choices") and event["choices"][0].get("finish_reason"):
                    finished = True
                if kind == "hang_up" and events >= 2:
                    return "hung_up"  # leaving the `with` closes the connection mid-stream
            return "completed" if finished and done else "truncated"
    except httpx.HTTPError as exc:
        return f"transport_error:{type(exc).__name__}"


def classify(answer: httpx.Response) -> str:
    if answer.status_code == 503 and "engine_busy" in answer.text:
        return "back_pressure"
    if answer.status_code >= 500:
        return "5xx"
    return f"status_{answer.status_code}"


def slots_in_use(server: Server, model: str) -> int:
    return httpx.get(server.url + "/stats", timeout=10).json()["models"][model]["slots_in_use"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = hearth(args.model, args.parallel, Path(data))
        try:
            warm = Counter()
            client(server.url, time.monotonic() + 3, 0, warm, threading.Lock())  # warm-up, one client
            rss_before = server.rss_mib()
            counts: Counter = Counter()
            lock = threading.Lock()
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(server.url, until, seed, counts, lock))
                for seed in range(1, args.clients + 1)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            deadline = time.monotonic() + 10
            while (busy := slots_in_use(server, args.model)) and time.monotonic() < deadline:
                time.sleep(0.1)
            rss_after = server.rss_mib()
            stats = httpx.get(server.url + "/stats", timeout=10).json()["models"][args.model]
            ram_tier = stats["cache"]["ram"]["bytes"] / 2**20
        finally:
            server.stop()
    # The RAM tier keeps evicted caches by design (bounded by HEARTH_CACHE_RAM): a leak is what
    # grows beyond it.
    growth = (rss_after - ram_tier) / rss_before - 1
    result = {
        "model": args.model,
        "clients": args.clients,
        "seconds": args.seconds,
        "outcomes": dict(sorted(counts.items())),
        "rss_mib": {
            "after_warm_up": round(rss_before),
            "after_load": round(rss_after),
            "ram_tier": round(ram_tier),
        },
        "rss_growth": round(growth, 4),
        "slots_busy_after": busy,
        "targets_met": counts["truncated"] == 0
        and counts["5xx"] == 0
        and growth <= 0.05
        and busy == 0
        and not any(k.startswith(("transport_error", "malformed_got")) for k in counts),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
