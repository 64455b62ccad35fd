"""History and login in a real browser (Debian's Chromium through Playwright) on the real default model.

Each test runs `chainlit run app.py` with its own data folder (SQLite history, users file, auth secret)
and reads the database file back with sqlite3: what the browser shows must be what was stored.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from support.browser import Server, open_stats, send, set_slider, shot, wait_idle

from llm.web.auth import hash_password, write_users

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")

THREAD_URL = r".*/thread/[0-9a-f-]{36}$"
THREAD_REFUSED = "Authorization for the thread failed."


@contextmanager
def running(log_path: Path, data_dir: Path, **env: str) -> Iterator[Server]:
    """A server on `data_dir`, stopped at the end whatever happens (unless the test killed it)."""
    server = Server(log_path, HEARTH_DATA_DIR=str(data_dir), **env)
    try:
        server.wait_ready()
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


@contextmanager
def new_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def query(data_dir: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(data_dir / "hearth.db") as connection:
        return connection.execute(sql, params).fetchall()


def wait_for_rows(data_dir: Path, sql: str, *params, timeout: float = 30) -> list[tuple]:
    """Chainlit writes to the database after it updates the browser: wait for the write to land."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := query(data_dir, sql, *params):
            return found
        time.sleep(0.2)
    raise TimeoutError(f"no rows for {sql} {params}")


def wait_for_log(server: Server, line: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while server.log().count(line) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{line!r} not logged {count} times:\n{server.log()[-3000:]}")
        time.sleep(0.2)


def open_chat(page: Page, url: str) -> None:
    page.goto(url)
    # The settings button appears once the websocket is up and on_chat_start (or on_chat_resume) has run.
    page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)


def short_replies(page: Page) -> None:
    """Max New Tokens down to 21 (Home, then two pages up): enough words, little time on 2 busy cores."""
    page.click("#chat-settings-open-modal")
    set_slider(page, "max_new_tokens", "Home")
    set_slider(page, "max_new_tokens", "PageUp")
    set_slider(page, "max_new_tokens", "PageUp")
    page.click("#confirm")


def chat(page: Page, server: Server, text: str) -> None:
    """Send `text` and wait for the whole reply."""
    done = len(server.usages())
    send(page, text)
    server.wait_for_usages(done + 1, timeout=300)
    wait_idle(page, timeout=120_000)


def stored_replies(data_dir: Path, thread_id: str) -> list[str]:
    return [
        row[0]
        for row in wait_for_rows(
            data_dir,
            "SELECT output FROM steps WHERE \"threadId\" = ? AND type = 'assistant_message' AND output != ''"
            ' ORDER BY "createdAt"',
            thread_id,
        )
    ]


def words(text: str, count: int = 3) -> re.Pattern:
    """The first words of `text` as the page shows them (markdown marks may sit between them)."""
    found = re.findall(r"\w+", text)[:count]
    if not found:  # a reply of symbols only (the model can answer in emoji): its first characters
        return re.compile(re.escape(text.strip()[:count]))
    return re.compile(r"\W+".join(found))


def login(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.fill("#email", name)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign In").click()


def thread_id_of(page: Page) -> str:
    expect(page).to_have_url(re.compile(THREAD_URL), timeout=30_000)
    return page.url.rsplit("/", 1)[1]


def test_a_thread_survives_kill_9_and_its_next_reply_continues_it(browser, tmp_path):
    data = tmp_path / "data"
    # 1. No users configured: no login page, the chat is kept for the local user.
    with running(tmp_path / "first.log", data) as first, new_page(browser) as page:
        open_chat(page, first.url)
        expect(page.locator("#email")).to_have_count(0)
        short_replies(page)
        chat(page, first, "My cat is called Whiskers.")
        thread_id = thread_id_of(page)
        first_reply = stored_replies(data, thread_id)[0]
        expect(page.locator('[data-step-type="assistant_message"]').last).to_contain_text(words(first_reply))
        first.kill()  # SIGKILL: no shutdown, no flush

    assert query(data, 'SELECT name, "userIdentifier" FROM threads') == [
        ("My cat is called Whiskers.", "local")
    ]
    # The panel was saved with the thread as the chat went, not at a disconnect that never came.
    (metadata,) = query(data, "SELECT metadata FROM threads WHERE id = ?", thread_id)[0]
    assert json.loads(metadata)["chat_settings"]["max_new_tokens"] == 21

    # 2. A new server on the same file; a new browser finds the thread in the sidebar and reopens it.
    with running(tmp_path / "second.log", data) as second, new_page(browser) as page:
        open_chat(page, second.url)
        entry = page.locator(f"#thread-{thread_id}")
        expect(entry).to_contain_text("My cat is called Whiskers.", timeout=30_000)
        shot(page, "p01-thread-list")
        entry.click()
        expect(page).to_have_url(f"{second.url}/thread/{thread_id}")
        messages = page.locator('[data-step-type="user_message"], [data-step-type="assistant_message"]')
        expect(messages.first).to_contain_text("My cat is called Whiskers.", timeout=60_000)
        expect(page.locator('[data-step-type="assistant_message"]').first).to_contain_text(words(first_reply))
        page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)  # on_chat_resume has run
        # The reply's stats line comes back under it (kept in the step's metadata, not a file store),
        # its quiet line and every figure.
        expect(page.locator(".hearth-stats-line").first).to_have_text(
            re.compile(r"^\d+ tok/s · \d+\.\d\d s to first token · \d+ of \d+ cached"), timeout=30_000
        )
        expect(
            open_stats(page, replies=1).get_by_text(re.compile(r"prompt tokens \(\d+ cached\)"))
        ).to_be_visible()
        shot(page, "p02-resumed-thread")

        # 3. The next reply continues the conversation: the engine's prompt holds the earlier turns.
        chat(page, second, "What is my cat called?")
        assert second.usages()[-1][3] <= 21  # the reopened thread kept its Max New Tokens
        prompt = ast.literal_eval(second.prompts()[-1])  # the log shows the prompt's repr
        turns = ["My cat is called Whiskers.", first_reply.strip(), "What is my cat called?"]
        positions = [prompt.find(turn) for turn in turns]
        assert -1 not in positions, f"a turn is missing from the prompt: {prompt!r}"
        assert positions == sorted(positions)
        # ... in the same thread, stored as such.
        assert page.url.endswith(thread_id)
        outputs = [row[0] for row in query(data, 'SELECT output FROM steps WHERE "threadId" = ?', thread_id)]
        assert "What is my cat called?" in outputs

        # 4. Its URL opens it as well.
        page.goto(f"{second.url}/thread/{thread_id}")
        expect(page.locator('[data-step-type="user_message"]').last).to_contain_text(
            "What is my cat called?", timeout=60_000
        )
        assert query(data, "SELECT COUNT(*) FROM threads") == [(1,)]


def test_login_refuses_a_wrong_password_and_users_see_only_their_own_threads(browser, tmp_path):
    data = tmp_path / "data"
    write_users(data / "users.json", {"alice": hash_password("alice-pw"), "bob": hash_password("bob-pw")})
    with running(tmp_path / "server.log", data) as server:
        # A wrong password: refused, still on the login page, with an error.
        with new_page(browser) as page:
            login(page, server.url, "alice", "not-alice-pw")
            expect(page.get_by_role("alert")).to_contain_text("Unable to sign in", timeout=30_000)
            assert "/login" in page.url
            expect(page.locator("#chat-input")).to_have_count(0)
            shot(page, "p03-login-refused")

        # Bob chats.
        with new_page(browser) as page:
            login(page, server.url, "bob", "bob-pw")
            page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
            short_replies(page)
            chat(page, server, "Bob's secret plan.")
            bobs_thread = thread_id_of(page)
        assert query(data, 'SELECT "userIdentifier" FROM threads WHERE id = ?', bobs_thread) == [("bob",)]
        # His browser has gone: Chainlit saved the chat's settings with the thread.
        saved = wait_for_rows(
            data, "SELECT metadata FROM threads WHERE id = ? AND metadata LIKE '%chat_settings%'", bobs_thread
        )
        assert json.loads(saved[0][0])["chat_settings"]["max_new_tokens"] == 21

        # Bob reopens it by its URL: his messages and his settings are back.
        with new_page(browser) as page:
            login(page, server.url, "bob", "bob-pw")
            page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
            page.goto(f"{server.url}/thread/{bobs_thread}")
            expect(page.get_by_text("Bob's secret plan.")).to_be_visible(timeout=60_000)
            page.click("#chat-settings-open-modal")
            slider = page.locator("[id='max_new_tokens'] [role=slider], [id='max_new_tokens'][role=slider]")
            expect(slider.first).to_have_attribute("aria-valuenow", "21")
            page.keyboard.press("Escape")
            # ... and the chain uses them: the next reply stops at 21 tokens, not at the default 128.
            chat(page, server, "Write a long story about Bob's secret plan.")
            _session, _prompt, _cached, completion, finish = server.usages()[-1]
            assert (completion, finish) == (21, "length")
            assert "Bob's secret plan." in ast.literal_eval(server.prompts()[-1])

        # Alice cannot see Bob's thread: not in her sidebar, not by its URL, not through the API.
        with new_page(browser) as page:
            login(page, server.url, "alice", "alice-pw")
            page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
            expect(page.locator(f"#thread-{bobs_thread}")).to_have_count(0)
            assert page.request.get(f"{server.url}/project/thread/{bobs_thread}").status == 401
            refusals = server.log().count(THREAD_REFUSED)
            page.goto(f"{server.url}/thread/{bobs_thread}")
            # Chainlit refuses the chat's connection for a thread whose author is someone else ...
            wait_for_log(server, THREAD_REFUSED, refusals + 1)
            # ... and the page shows nothing of it.
            expect(page.get_by_text("Bob's secret plan.")).to_have_count(0)
            shot(page, "p04-other-users-thread")


def test_rename_delete_and_feedback_are_stored(browser, tmp_path):
    data = tmp_path / "data"
    with running(tmp_path / "server.log", data) as server, new_page(browser) as page:
        open_chat(page, server.url)
        short_replies(page)
        chat(page, server, "Tell me about owls.")
        thread_id = thread_id_of(page)

        # Feedback: a thumbs-up on the reply, with a comment.
        # Chainlit attaches a reply's feedback to the run that produced it (the reply's parent step).
        run_id = wait_for_rows(
            data,
            'SELECT "parentId" FROM steps WHERE "threadId" = ? AND type = \'assistant_message\'',
            thread_id,
        )[0][0]
        assert query(data, "SELECT type FROM steps WHERE id = ?", run_id) == [("run",)]
        page.locator(".positive-feedback-off").last.click()
        page.locator("textarea").last.fill("Good owl facts.")
        page.click("#submit-feedback")
        expect(page.locator(".positive-feedback-on")).to_have_count(1, timeout=30_000)
        assert wait_for_rows(data, 'SELECT "forId", "threadId", value, comment FROM feedbacks') == [
            (run_id, thread_id, 1, "Good owl facts.")
        ]
        expect(page.get_by_role("dialog")).to_have_count(0)
        shot(page, "p05-feedback")

        # Rename from the sidebar's menu.
        entry = page.locator(f"#thread-{thread_id}")
        entry.hover()
        entry.locator("#thread-options").click()
        page.click("#rename-thread")
        page.fill("#name", "Owls")
        page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
        expect(entry).to_contain_text("Owls", timeout=30_000)
        assert wait_for_rows(data, "SELECT name FROM threads WHERE id = ? AND name = 'Owls'", thread_id)

        # Delete from the same menu: the thread, its messages and its feedback go.
        entry.hover()
        entry.locator("#thread-options").click()
        page.click("#delete-thread")
        page.get_by_role("alertdialog").get_by_role("button", name="Confirm").click()
        expect(page.locator(f"#thread-{thread_id}")).to_have_count(0, timeout=30_000)
        deadline = time.monotonic() + 30
        while query(data, "SELECT id FROM threads WHERE id = ?", thread_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert query(data, "SELECT id FROM threads WHERE id = ?", thread_id) == []
        assert query(data, 'SELECT id FROM steps WHERE "threadId" = ?', thread_id) == []
        assert query(data, "SELECT id FROM feedbacks") == []
