"""The landing, the quiet stats line, keys, narrow screens, export and import, and presets, in a real
browser (Debian's Chromium) against the real default model and a real SQLite history.

One server serves every test; what reached the engine is read from its debug log (every prompt, every
request's SamplingParams and usage line), and what was kept from the database file itself.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sqlite3
import uuid
from pathlib import Path

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

    # A starter sends its question; the reply streams (short: 2 shared cores are slow when busy).
    short_replies(page)
    expect(page.locator("#welcome-screen")).to_be_visible()  # the panel leaves the landing as it was
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


def import_file(page: Page, path: Path) -> None:
    command(page, "Import")
    chooser = page.locator("input[type=file]")
    expect(chooser).to_have_count(1, timeout=30_000)
    chooser.set_input_files(str(path))


def steps_of(server: Server, thread_id: str) -> list[tuple]:
    return query(
        server, 'SELECT id, type, output FROM steps WHERE "threadId" = ? ORDER BY "createdAt"', thread_id
    )


def conversation_of(server: Server, thread_id: str) -> list[tuple]:
    """The thread's messages as stored, without empty ones (a command's press), errors and notices."""
    return query(
        server,
        "SELECT type, output FROM steps WHERE \"threadId\" = ? AND output != ''"
        ' AND NOT COALESCE("isError", 0)'
        " AND type IN ('user_message', 'assistant_message') AND metadata NOT LIKE '%hearth_notice%'"
        ' ORDER BY "createdAt"',
        thread_id,
    )


def presses(page: Page):
    """The chat's command presses (Export, Import): user messages that name a command and hold no text."""
    return page.locator('[data-step-type="user_message"]').filter(has=page.locator(".command-span"))


def reopen(page: Page, server: Server, thread_id: str) -> None:
    """A new chat after a reload, then the thread picked in the sidebar, as a user reopens one."""
    page.goto(server.url)
    page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
    page.locator(f"#thread-{thread_id}").click()
    expect(page).to_have_url(re.compile(f".*/thread/{thread_id}$"), timeout=30_000)
    expect(page.locator("#command-Import")).to_have_css("opacity", "1")  # offered again (fading in)


def test_export_then_import_into_a_new_chat_and_what_is_refused(browser, server, tmp_path):
    page = open_chat(browser, server)
    short_replies(page, system_prompt="You are a helpful pirate.")
    chat(page, server, "My cat is called Whiskers.")
    first_reply = last_reply(page)
    expect(page).to_have_url(THREAD_URL, timeout=30_000)
    thread_id = page.url.rsplit("/", 1)[1]

    # Export: Markdown and JSON, downloaded as a user would.
    command(page, "Export")
    expect(page.get_by_text("This chat (2 messages)")).to_be_visible(timeout=30_000)
    files = {}
    for kind in ("md", "json"):
        with page.expect_download() as download:
            page.get_by_text(f"my-cat-is-called-whiskers.{kind}").last.click()
        files[kind] = tmp_path / f"export.{kind}"
        download.value.save_as(files[kind])
    shot(page, "f10-exported")
    expect(presses(page)).to_have_count(0)  # the Export press is gone once it has answered
    exported = json.loads(files["json"].read_text())
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("user", "My cat is called Whiskers."),
        ("assistant", exported["messages"][1]["content"]),
    ]
    assert exported["messages"][1]["content"].split()[:3] == first_reply.split()[:3]
    assert LINE.match(exported["messages"][1]["stats_line"])
    assert exported["settings"]["system_prompt"] == "You are a helpful pirate."
    assert exported["settings"]["temperature"] == 0 and exported["settings"]["max_new_tokens"] == 21
    assert exported["model"] == "default" and exported["thread"]["id"] == thread_id
    markdown = files["md"].read_text()
    assert "## You\n\nMy cat is called Whiskers." in markdown and "> You are a helpful pirate." in markdown
    page.context.close()
    original = steps_of(server, thread_id)

    # Another user's thread, as the database holds it.
    foreign_id = str(uuid.uuid4())
    query(
        server,
        'INSERT INTO users (id, identifier, metadata, "createdAt") VALUES (?, ?, ?, ?)',
        str(uuid.uuid4()),
        "mallory",
        "{}",
        "2026-01-01",
    )
    query(
        server,
        'INSERT INTO threads (id, name, "userIdentifier") VALUES (?, ?, ?)',
        foreign_id,
        "Hers",
        "mallory",
    )
    refused = {
        "bad.json": ("{not json", "bad.json was not imported: it is not JSON"),
        "hers.json": (
            json.dumps({**exported, "thread": {**exported["thread"], "id": foreign_id}}),
            "hers.json was not imported: it is an export of another user's chat.",
        ),
        "huge.json": (
            json.dumps(exported) + " " * (10 * 2**20),
            "huge.json was not imported: it is 10.0 MB, and a Hearth chat export is at most 5 MB.",
        ),
    }
    page = open_chat(browser, server)
    for name, (content, message) in refused.items():
        (tmp_path / name).write_text(content)
        import_file(page, tmp_path / name)
        expect(page.get_by_text(message)).to_be_visible(timeout=60_000)
    shot(page, "f11-import-refused")

    # The export itself: its messages and settings, in this new chat.
    import_file(page, files["json"])
    expect(page.get_by_text("Imported 2 messages")).to_be_visible(timeout=60_000)
    # The four presses of Import (three refused) are gone: the one user message is the imported one.
    users = page.locator('[data-step-type="user_message"]')
    expect(users.filter(has_text="My cat is called Whiskers.")).to_have_count(1)
    expect(users).to_have_count(1)
    expect(presses(page)).to_have_count(0)
    reply = page.locator('[data-step-type="assistant_message"]').filter(has=page.locator(".hearth-stats"))
    expect(reply).to_have_count(1)
    expect(reply).to_contain_text(re.compile(r"\W+".join(re.findall(r"\w+", first_reply)[:3])))
    expect(reply.locator(".hearth-stats-line")).to_have_text(exported["messages"][1]["stats_line"] + " ▾")
    page.click("#chat-settings-open-modal")
    expect(page.locator("#system_prompt")).to_have_value("You are a helpful pirate.")
    page.keyboard.press("Escape")  # closes the panel (a reply is not being written)
    expect(page.get_by_role("dialog")).to_have_count(0)
    shot(page, "f12-imported")
    usage = chat(page, server, "What is my cat called?")
    # The next reply continues the conversation: the engine's prompt holds the earlier turns, in order.
    prompt = ast.literal_eval(server.prompts()[-1])
    turns = [
        "You are a helpful pirate.",
        "My cat is called Whiskers.",
        first_reply.strip()[:20],
        "What is my cat called?",
    ]
    positions = [prompt.find(turn) for turn in turns]
    assert -1 not in positions and positions == sorted(positions), prompt
    assert usage[3] <= 21  # the imported Max New Tokens
    ((imported_id,),) = wait_until(
        lambda: query(server, 'SELECT "threadId" FROM steps WHERE output = ?', "What is my cat called?"),
        what="the imported thread's next message in the database",
    )
    assert imported_id not in (thread_id, foreign_id)
    kept = wait_until(lambda: conversation_of(server, imported_id), what="the imported thread's messages")
    assert kept[:2] == [
        ("user_message", "My cat is called Whiskers."),
        ("assistant_message", exported["messages"][1]["content"]),
    ]
    assert query(server, 'SELECT "userIdentifier" FROM threads WHERE id = ?', imported_id) == [("local",)]
    # Nothing else was touched.
    assert steps_of(server, thread_id) == original
    assert steps_of(server, foreign_id) == []
    assert query(server, 'SELECT name, "userIdentifier" FROM threads WHERE id = ?', foreign_id) == [
        ("Hers", "mallory")
    ]
    # No press was kept: the reopened threads show their messages and no empty user message.
    for reopened, user_messages in ((imported_id, 2), (thread_id, 1)):
        reopen(page, server, reopened)
        expect(users.filter(has_text="My cat is called Whiskers.")).to_have_count(1, timeout=30_000)
        expect(users).to_have_count(user_messages)
        expect(presses(page)).to_have_count(0)
        expect(page.locator(".hearth-stats")).to_have_count(user_messages)  # each reply's, kept
    shot(page, "f16-reopened-after-export")
    press_steps = "SELECT COUNT(*) FROM steps WHERE type = 'user_message' AND output = ''"
    assert query(server, press_steps) == [(0,)]
    page.context.close()


def test_an_imported_chat_continues_from_the_cache(browser, server, tmp_path):
    """The exported chat's cache (still in a slot or a tier: nothing restarted) serves the imported
    thread's next reply: the engine finds it by its tokens, whichever thread of the user left it."""
    page = open_chat(browser, server)
    short_replies(page, system_prompt="You are a terse assistant.")
    chat(page, server, "Name a colour.")
    _session, earlier, _cached, _completion, _finish = chat(page, server, "Name another one.")
    command(page, "Export")
    with page.expect_download() as download:
        page.get_by_text("name-a-colour.json").last.click()
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    page.context.close()

    page = open_chat(browser, server)  # New Chat
    import_file(page, exported)
    expect(page.get_by_text("Imported 4 messages")).to_be_visible(timeout=60_000)
    _session, prompt, cached, _completion, _finish = chat(page, server, "And a third?")
    assert cached >= earlier, f"{cached} of {prompt} prompt tokens cached; the earlier turns took {earlier}"
    line = page.locator(".hearth-stats-line").last
    expect(line).to_contain_text(f"{cached} of {prompt} cached")
    shot(page, "f17-imported-then-cached")
    page.context.close()


def test_open_stats_details_stay_open_across_later_replies(browser, server):
    page = open_chat(browser, server)
    short_replies(page)
    chat(page, server, "Hello!")
    first = open_stats(page, replies=1)
    chat(page, server, "How are you?")
    expect(page.locator(".hearth-stats")).to_have_count(2, timeout=30_000)
    expect(first).to_be_visible()
    expect(page.locator(".hearth-stats-line").first).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".hearth-stats-details")).to_have_count(1)  # the new reply's stay closed
    first.scroll_into_view_if_needed()  # Chainlit scrolled the new question to the top
    shot(page, "f18-stats-stay-open")
    page.context.close()


def choose(page: Page, select_id: str, option: str) -> None:
    page.click(f"#{select_id}")
    page.get_by_role("option", name=option, exact=True).click()


def toast(page: Page, text: str) -> None:
    expect(page.get_by_text(text).last).to_be_visible(timeout=30_000)


def test_the_presets_come_first_in_the_panel(browser, server):
    page = open_chat(browser, server)
    page.click("#chat-settings-open-modal")
    fields = page.get_by_role("dialog").locator("label[for]")
    expect(fields.first).to_be_visible()
    order = fields.evaluate_all("labels => labels.map(label => label.htmlFor)")
    assert order[:5] == ["preset", "preset_save", "preset_rename", "preset_delete", "model"], order
    shot(page, "f15-panel-presets-first")
    page.context.close()


def test_a_preset_is_saved_applied_in_a_new_chat_renamed_and_deleted(browser, server):
    page = open_chat(browser, server)
    page.click("#chat-settings-open-modal")
    set_slider(page, "temperature", "Home")
    set_slider(page, "max_new_tokens", "Home")
    set_slider(page, "max_new_tokens", "PageUp")
    page.fill("#system_prompt", "Answer like a sailor.")
    page.fill("#preset_save", "Sailor")
    shot(page, "f13-preset-save")
    page.click("#confirm")
    toast(page, "Preset “Sailor” saved.")
    (values,) = query(
        server, 'SELECT "values" FROM presets WHERE "userIdentifier" = ? AND name = ?', "local", "Sailor"
    )[0]
    saved = json.loads(values)
    assert saved["temperature"] == 0 and saved["system_prompt"] == "Answer like a sailor."
    assert saved["model"] == "default" and "chat_template" in saved and "preset_save" not in saved
    page.context.close()

    # A new chat starts from the defaults; picking the preset and confirming applies all of it.
    page = open_chat(browser, server)
    page.click("#chat-settings-open-modal")
    expect(page.locator("#system_prompt")).to_have_value("")
    choose(page, "preset", "Sailor")
    page.click("#confirm")
    toast(page, "Preset “Sailor” applied.")
    chat(page, server, "Hello!")
    session, params = SAMPLING.findall(server.log())[-1]
    assert "temperature=0.0," in params and f"max_new_tokens={saved['max_new_tokens']}," in params, params
    assert "Answer like a sailor." in server.prompts()[-1]
    page.click("#chat-settings-open-modal")
    expect(page.locator("#system_prompt")).to_have_value("Answer like a sailor.")

    # Renamed, then deleted: in the panel and in the database.
    page.fill("#preset_rename", "Mariner")
    page.click("#confirm")
    toast(page, "Preset “Sailor” renamed to “Mariner”.")
    assert query(server, 'SELECT name FROM presets WHERE "userIdentifier" = ?', "local") == [("Mariner",)]
    page.click("#chat-settings-open-modal")
    expect(page.locator("#preset")).to_contain_text("Mariner")
    shot(page, "f14-preset-renamed")
    page.click("#preset_delete")
    page.click("#confirm")
    toast(page, "Preset “Mariner” deleted.")
    assert query(server, "SELECT name FROM presets") == []
    page.click("#chat-settings-open-modal")
    page.click("#preset")
    expect(page.get_by_role("option")).to_have_count(1)  # (none) only
    page.context.close()
