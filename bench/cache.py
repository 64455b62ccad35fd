"""Does a conversation's next turn compute only its new tokens, whoever calls? The KV cache tiers
measured as clients really call: the official `openai` client, no session field, raw-text
conversations of `--turns` turns with 24-token greedy replies, interleaved turn by turn, more
conversations than slots; and a session's first turn after the server was stopped and started again.

- `stateless`: for each setting (conversations x slots) the median TTFT of turn 1 and of the last turn
  over the conversations, and their ratio (target <= 1.3 in both settings).
- `--peer PATH`: the same against llama.cpp's `llama-server` (`make llama-server` builds it from the
  same sdist's vendor/llama.cpp with the Makefile's flags), started as its users start it
  (`--parallel N -c N*4096 -t 2`, everything else default), side by side in one run; `vs_peer` is
  Hearth's last-turn TTFT over the peer's (target <= 0.7).
- `restart`: a session of about `--restart-tokens` tokens, the server stopped with SIGTERM and started
  again; the first-turn TTFT with the disk tier over the same without it (target <= 0.2).
- `bytes_per_token` in RAM and on disk, and the servers' RSS.

Every server is a process of its own; this process only runs clients. Prints JSON.

    .venv/bin/python bench/cache.py [--model default] [--peer PATH] [--turns 10] [--settings 4x8,12x4]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from anywhere; and the bench folder must not shadow the standard library (`concurrent`).
sys.path[0] = str(Path(__file__).resolve().parent.parent)
# The tests' helpers (tests/support) start and stop a server process the way this benchmark needs.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import json
import statistics
import tempfile
import time

import httpx
import openai
from support.rest import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
REPLY = {"max_tokens": 24, "temperature": 0}
CTX = 4096
THREADS = 2


class Server(ServerProcess):
    """A server process on a free port, up once `ready` answers 200 (a cold start may take minutes);
    stopped with SIGTERM, with a minute to write its sessions' caches to disk."""

    def __init__(self, args: list[str], ready: str, env: dict[str, str] | None = None) -> None:
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in args]
        super().__init__(args, port, ready, env, start_within=300, stop_within=60)
        self.start()

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) / 1024


def hearth(model: str, slots: int, data_dir: Path, **env: str) -> Server:
    args = [sys.executable, "-m", "llm.rest", "--model", model, "--port", "{port}", "--parallel", str(slots)]
    args += ["--ctx-size", str(CTX), "--threads", str(THREADS)]
    return Server(args, "/health", {"HEARTH_DATA_DIR": str(data_dir), **env})


def peer(path: str, model_path: str, slots: int) -> Server:
    args = [path, "-m", model_path, "--host", "127.0.0.1", "--port", "{port}", "--parallel", str(slots)]
    args += ["-c", str(slots * CTX), "-t", str(THREADS)]
    return Server(args, "/health")


def turn(client: openai.OpenAI, model: str, text: str, **extra) -> tuple[float, str]:
    """One streamed completion: (seconds to the first text, the whole reply)."""
    started = time.perf_counter()
    first, parts = None, []
    for chunk in client.completions.create(model=model, prompt=text, stream=True, **REPLY, **extra):
        piece = chunk.choices[0].text if chunk.choices else ""
        if piece and first is None:
            first = time.perf_counter() - started
        parts.append(piece)
    return (first if first is not None else time.perf_counter() - started), "".join(parts)


def opening(i: int) -> str:
    facts = " ".join(
        f"Fact {k}: the number {i * 100 + k} is {'even' if k % 2 else 'odd'}." for k in range(12)
    )
    return (
        f"Conversation {i}. A tutor answers questions about numbers.\n{facts}\n\nQ: What is number {i}?\nA:"
    )


def conversations(server: Server, model: str, n: int, turns: int) -> dict:
    client = server.client()
    turn(client, model, "Warm up.")
    texts = [opening(i) for i in range(n)]
    ttft: list[list[float]] = [[] for _ in range(n)]
    for t in range(turns):
        for i in range(n):
            seconds, reply = turn(client, model, texts[i])
            ttft[i].append(seconds)
            texts[i] += f"{reply}\n\nQ: And what about {i * 7 + t}?\nA:"
    first = statistics.median(c[0] for c in ttft)
    last = statistics.median(c[-1] for c in ttft)
    return {"turn_1_s": round(first, 4), "last_turn_s": round(last, 4), "ratio": round(last / first, 2)}


def stateless(model: str, settings: list[tuple[int, int]], turns: int, peer_path: str | None) -> dict:
    from native.resolve import resolve_model

    out = {}
    for n, slots in settings:
        name = f"{n}_conversations_{slots}_slots"
        with tempfile.TemporaryDirectory() as data:
            server = hearth(model, slots, Path(data))
            try:
                out[name] = {"hearth": conversations(server, model, n, turns)}
                stats = httpx.get(server.url + "/stats", timeout=10).json()["models"][model]
                out[name]["hearth"]["cache"] = {k: stats["cache"][k] for k in ("slots", "ram")}
                out[name]["hearth"]["rss_mib"] = round(server.rss_mib())
            finally:
                server.stop()
        if peer_path:
            server = peer(peer_path, str(resolve_model(model).resolve()), slots)
            try:
                out[name]["peer"] = conversations(server, model, n, turns)
                out[name]["peer"]["rss_mib"] = round(server.rss_mib())
            finally:
                server.stop()
            out[name]["vs_peer"] = round(
                out[name]["hearth"]["last_turn_s"] / out[name]["peer"]["last_turn_s"], 2
            )
    return out


def restart(model: str, tokens: int) -> dict:
    """First-turn TTFT of a long session after a restart, with the disk tier and without it."""
    words = max(1, tokens // 7)
    text = "Notes. " + " ".join(f"item {i} is {'red' if i % 3 else 'blue'}," for i in range(words))
    out = {}
    for tier, env in (("disk", {}), ("no_disk", {"HEARTH_CACHE_DISK": "0"})):
        with tempfile.TemporaryDirectory() as data:
            server = hearth(model, 2, Path(data), **env)
            try:
                _, reply = turn(server.client(), model, text, extra_body={"session_id": "notes"})
            finally:
                server.stop()
            size = sum(f.stat().st_size for f in (Path(data) / "kv").glob("*.kv"))
            server = hearth(model, 2, Path(data), **env)
            try:
                client = server.client()
                turn(client, model, "Warm up.")
                seconds, _ = turn(
                    client, model, text + reply + " Which were blue?", extra_body={"session_id": "notes"}
                )
                stats = httpx.get(server.url + "/stats", timeout=10).json()["models"][model]["cache"]["disk"]
            finally:
                server.stop()
        out[tier] = {
            "first_turn_s": round(seconds, 4),
            "disk_hits": stats["hits"],
            "tokens_from_disk": stats["tokens_saved"],
        }
        if size:
            out["disk_bytes_per_token"] = round(size / max(1, stats["tokens_saved"]))
    out["ratio"] = round(out["disk"]["first_turn_s"] / out["no_disk"]["first_turn_s"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--peer", help="llama.cpp's llama-server binary (`make llama-server`)")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--settings", default="4x8,12x4", help="conversations x slots, comma-separated")
    parser.add_argument("--restart-tokens", type=int, default=2000)
    args = parser.parse_args()
    settings = [tuple(int(x) for x in s.split("x")) for s in args.settings.split(",")]
    result = {
        "model": args.model,
        "turns": args.turns,
        "stateless": stateless(args.model, settings, args.turns, args.peer),
    }
    for name, figures in result["stateless"].items():
        ram = figures["hearth"]["cache"]["ram"]
        if ram.get("tokens"):
            result.setdefault("ram_bytes_per_token", {})[name] = round(ram["bytes"] / ram["tokens"])
    result["restart"] = restart(args.model, args.restart_tokens)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
