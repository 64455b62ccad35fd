"""Real servers for the REST tests: `python -m llm.rest` and llama-cpp-python's server, each a subprocess
on a free 127.0.0.1 port, waited for until it answers and stopped by the fixture that started it.

Holds no tests; the test modules import `ServerProcess`, `hearth_server`, `llama_cpp_server` and `free_port`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server subprocess: `start()` (or `with`) starts it and waits until `ready_path` answers 200;
    `stop()` (or the end of the `with`) stops it with SIGTERM, then kills it after `stop_within`
    seconds. Shared with bench/cache.py and bench/rest.py, whose servers may take longer to start (and,
    in bench/cache.py, to save their caches)."""

    def __init__(
        self,
        args: list[str],
        port: int,
        ready_path: str,
        env: dict[str, str] | None = None,
        *,
        start_within: float = 120.0,
        stop_within: float = 15.0,
    ) -> None:
        self.args, self.port, self.ready_path = args, port, ready_path
        self.env = {**os.environ, **(env or {})}
        self.start_within, self.stop_within = start_within, stop_within
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.NamedTemporaryFile(prefix="hearth-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.start_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling a port: nothing to wait on but the next try
        self.stop()
        raise RuntimeError(f"the server did not answer within {self.start_within:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]


def local_engine():
    """The default model in this process, on one thread when this process loads it first: llama.cpp's
    threads spin-wait on each other, which crawls on a busy shared machine (servers get --threads 1
    for the same reason). Test modules that compare with it override conftest's `engine` with this."""
    from native import load_engine

    return load_engine("default", n_threads=1)


def hearth_server(*flags: str, env: dict[str, str] | None = None, port_flag: bool = True) -> ServerProcess:
    """`python -m llm.rest FLAGS --port P`; with `port_flag=False` the port comes from HEARTH_PORT."""
    port = free_port()
    args = [sys.executable, "-m", "llm.rest", *flags]
    if port_flag:
        args += ["--port", str(port)]
    else:
        env = {**(env or {}), "HEARTH_PORT": str(port)}
    return ServerProcess(args, port, "/health", env)


def llama_cpp_server(model_path: Path, n_ctx: int = 1024) -> ServerProcess:
    """llama-cpp-python's own OpenAI-compatible server on the same model file."""
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1"]
    args += ["--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1"]
    return ServerProcess(args, port, "/v1/models")


def sse_events(response) -> list[dict | str]:
    """The `data:` payloads of a `requests` streaming response, JSON-decoded except `[DONE]`."""
    events: list[dict | str] = []
    for line in response.iter_lines(decode_unicode=True):
        if line and line.startswith("data:"):
            data = line[5:].strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events
