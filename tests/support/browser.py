"""What the browser tests share: a Chainlit server run as a user runs it, and small page helpers.

The server runs as `chainlit run app.py` would for a user, in its own data folder (history database,
users, auth secret) unless the test names one; what reached the engine is read from its log
(HEARTH_LOG_LEVEL=debug prints every prompt and every request's usage line).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests
from playwright.sync_api import Locator, Page, expect

from support.rest import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USAGE = re.compile(
    r"session=(\S+) slot=\d+ prompt=(\d+) cached=(\d+)(?: \(\w+\))? completion=(\d+) finish=(\w+)"
)


class Server:
    def __init__(self, log_path: Path, app: str = "app.py", **env_overrides: str) -> None:
        """Runs `chainlit run APP` (a path from the repository root) with `env_overrides` set."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Its own history, users and auth secret, never the user's: beside the log unless given.
        self.data_dir = Path(env_overrides.pop("HEARTH_DATA_DIR", log_path.parent / "data"))
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHAINLIT_AUTH_SECRET")},
            "HEARTH_LOG_LEVEL": "debug",
            "HEARTH_DATA_DIR": str(self.data_dir),
            **env_overrides,
        }
        self.log_file = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chainlit",
                "run",
                app,
                "--headless",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chainlit exited early:\n{self.log()}")
            try:
                if requests.get(self.url, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"chainlit did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def usages(self) -> list[tuple[str, int, int, int, str]]:
        return [(s, int(p), int(c), int(n), f) for s, p, c, n, f in USAGE.findall(self.log())]

    def wait_for_usages(self, count: int, timeout: float = 60) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.usages()) >= count:
                return found
            time.sleep(0.1)
        raise TimeoutError(f"expected {count} finished requests, log:\n{self.log()[-3000:]}")

    def prompts(self) -> list[str]:
        return re.findall(r"DEBUG - hearth.engine - prompt for session \S+: (.*)", self.log())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would end it: nothing gets to flush or clean up."""
        self.process.kill()
        self.process.wait()
        self.log_file.close()


def send(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-submit")


def last_reply(page: Page) -> str:
    replies = page.locator('[data-step-type="assistant_message"]')
    return replies.last.inner_text() if replies.count() else ""


def wait_idle(page: Page, timeout: float = 60_000) -> None:
    expect(page.locator("#stop-button")).to_have_count(0, timeout=timeout)


def open_stats(page: Page, replies: int, timeout: float = 30_000) -> Locator:
    """Open the stats of the last of the chat's `replies` replies (one click on its quiet line) and
    return the list of every figure. A reply's stats come a moment after the reply itself (the
    browser fetches the element's code), so the count says which one is the last."""
    every = page.locator(".hearth-stats")
    expect(every).to_have_count(replies, timeout=timeout)
    stats = every.nth(replies - 1)
    line = stats.locator(".hearth-stats-line")
    if line.get_attribute("aria-expanded") != "true":
        line.click()
    details = stats.locator(".hearth-stats-details")
    expect(details).to_be_visible()
    return details


def set_slider(page: Page, field: str, key: str) -> None:
    thumb = page.locator(f"[id='{field}'] [role=slider], [id='{field}'][role=slider]").first
    thumb.focus()
    thumb.press(key)


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
