"""The landing, the quiet stats line, keys, narrow screens, export and import, and presets, in a real
browser (Debian's Chromium) against the real default model and a real SQLite history.

One server serves every test; what reached the engine is read from its debug log (every prompt, every
request's SamplingParams and usage line), and what was kept from the database file itself.
"""

from __future__ import annotations

import ast
import re
import shutil
import sqlite3

import pytest
from playwright.sync_api import Page, expect
from support.browser import Server, last_reply, open_stats, send, set_slider, shot, wait_idle
from support.wait import wait_until

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")

MODEL = "SmolLM2-135M-Instruct.Q4_1"
SAMPLING = re.compile(r"sampling for session (\S+): SamplingParams\((.*)\)")
THREAD_URL = re.compile(r".*/thread/[0-9a-f-]{36}$")
LINE = re.compile(r"^(\d+) tok/s · (\d+\.\d\d) s to first token · (\d+) of (\d+) cached")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("chainlit") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def open_chat(browser, server: Server, width: int = 1280, height: int = 900, **options) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}, **options).new_page()
    page.goto(server.url)
    page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)  # websocket up, chat started
    return page


def query(server: Server, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(server.data_dir / "hearth.db") as connection:
        return connection.execute(sql, params).fetchall()


def chat(page: Page, server: Server, text: str) -> tuple:
    """Send `text`, wait for the whole reply; the engine's usage line of it."""
    done = len(server.usages())
    send(page, text)
    usage = server.wait_for_usages(done + 1, timeout=180)[-1]
    wait_idle(page, timeout=120_000)
    return usage


def short_replies(page: Page, system_prompt: str | None = None) -> None:
    """Temperature 0 and Max New Tokens 21 (Home, then two pages up): little time on 2 busy cores."""
    page.click("#chat-settings-open-modal")
    set_slider(page, "temperature", "Home")
    set_slider(page, "max_new_tokens", "Home")
    set_slider(page, "max_new_tokens", "PageUp")
    set_slider(page, "max_new_tokens", "PageUp")
    if system_prompt is not None:
        page.fill("#system_prompt", system_prompt)
    page.click("#confirm")


def command(page: Page, name: str) -> None:
    """Press a command's button beside the message box, then send (a command needs no text)."""
    page.click(f"#command-{name}")
    page.click("#chat-submit")


def test_landing_starters_stats_line_and_keys(browser, server):
    page = open_chat(browser, server)
    # The landing says what this is, what runs, and offers questions (the default model chats).
    welcome = page.locator("#welcome-screen")
    expect(welcome).to_contain_text("Hearth", timeout=30_000)
    expect(welcome).to_contain_text(f"{MODEL} · 93.8 MiB · context 4096 tokens · cpu, ")
    expect(welcome).to_contain_text("threads")
    starters = page.locator("#starters button")
    expect(starters).to_have_count(4)
    expect(welcome.locator("img").first).to_have_attribute("src", re.compile("/hearth/mark"))
    shot(page, "f01-landing")

    # A starter sends its question; the reply streams.
    page.get_by_role("button", name="Why is the sea salty?").click()
    expect(page.locator('[data-step-type="user_message"]')).to_contain_text("Why is the sea salty?")
    lengths: set[int] = set()
    wait_until(lambda: lengths.add(len(last_reply(page))) or server.usages(), 120, "the reply's end")
    wait_idle(page)
    assert len([n for n in lengths if n > 0]) >= 3, f"reply did not stream: saw lengths {sorted(lengths)}"
    assert "Why is the sea salty?" in server.prompts()[-1]
    _session, prompt, cached, completion, _finish = server.usages()[-1]

    # Its stats: one quiet line, every figure one click away, the same as the engine's.
    line = page.locator(".hearth-stats-line").last
    expect(line).to_have_text(LINE, timeout=30_000)
    found = LINE.match(line.inner_text())
    assert (int(found[3]), int(found[4])) == (cached, prompt)
    lines = line.evaluate(
        "e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)"
    )
    assert lines < 1.5, f"the stats line takes {lines:.1f} lines"
    expect(page.locator(".hearth-stats-details")).to_have_count(0)
    shot(page, "f02-stats-line")
    details = open_stats(page, replies=1)
    figures = details.locator("li").all_inner_texts()
    assert figures[:6] == [
        MODEL,
        f"{prompt} prompt tokens ({cached} cached)",
        f"{completion} generated",
        figures[3],
        figures[4],
        f"context {prompt + completion}/4096",
    ]
    assert re.fullmatch(r"first token \d+\.\d\d s", figures[3]) and re.fullmatch(r"\d+\.\d tok/s", figures[4])
    shot(page, "f03-stats-details")

    # Keys: Shift+Enter breaks the line and sends nothing; Enter sends.
    done = len(server.usages())
    short_replies(page)
    page.click("#chat-input")
    page.keyboard.type("First line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#chat-input") == "First line\nsecond line"
    expect(page.locator('[data-step-type="user_message"]')).to_have_count(1)
    page.keyboard.press("Enter")
    server.wait_for_usages(done + 1)
    wait_idle(page)
    assert "First line\nsecond line" in ast.literal_eval(server.prompts()[-1])  # the log shows its repr

    # Escape stops a streaming reply, as the stop button does.
    page.click("#chat-settings-open-modal")
    set_slider(page, "max_new_tokens", "End")
    page.click("#confirm")
    replies = page.locator('[data-step-type="assistant_message"]')
    before = replies.count()
    send(page, "Write a very long story about a dragon and a knight, with many chapters.")
    expect(page.locator("#stop-button")).to_be_visible(timeout=30_000)
    expect(replies).to_have_count(before + 1, timeout=60_000)
    wait_until(lambda: len(last_reply(page)) >= 40, 120, "40 characters of the reply")
    page.keyboard.press("Escape")
    usage = server.wait_for_usages(done + 2)[-1]
    assert usage[4] == "cancelled" and usage[3] < 1024
    wait_idle(page)
    expect(open_stats(page, replies=3).get_by_text("stopped by you")).to_be_visible()
    shot(page, "f04-escape-stopped")
    page.context.close()


def test_the_landing_in_the_light_theme_and_the_chat_on_a_phone(browser, server):
    light = open_chat(browser, server)  # Chainlit starts dark (f01); its theme menu turns it light
    light.click("#theme-toggle")
    light.get_by_role("menuitem", name="Light").click()
    expect(light.locator("html")).not_to_have_class(re.compile(r"\bdark\b"))
    expect(light.get_by_role("menu")).to_have_count(0)
    expect(light.locator("#welcome-screen")).to_contain_text(MODEL, timeout=30_000)
    shot(light, "f05-landing-light")
    light.context.close()

    page = open_chat(browser, server, width=390, height=844, is_mobile=True, has_touch=True)
    expect(page.locator("#welcome-screen")).to_contain_text(MODEL, timeout=30_000)
    shot(page, "f06-phone-landing")
    short_replies(page)
    chat(page, server, "Hello there!")
    line = page.locator(".hearth-stats-line").last
    expect(line).to_have_text(LINE)
    box = line.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (
        f"the stats line leaves the screen: {box}"
    )
    input_box = page.locator("#chat-input").bounding_box()
    assert input_box and input_box["x"] + input_box["width"] <= 390
    shot(page, "f07-phone-chat")
    open_stats(page, replies=1)
    shot(page, "f08-phone-stats")
    page.click("#chat-settings-open-modal")
    expect(page.locator("#confirm")).to_be_visible()
    shot(page, "f09-phone-panel")
    page.context.close()
