"""The Chainlit app in a real browser (Debian's Chromium through Playwright) on the real default model.

The server runs as `chainlit run app.py` would for a user; what reached the engine is read from its
log (HEARTH_LOG_LEVEL=debug prints every prompt and every request's usage line).
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect
from support.browser import Server, last_reply, open_stats, send, set_slider, shot, wait_idle
from support.wait import wait_until

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("chainlit") / "server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url)
    # The settings button appears once the websocket is up and on_chat_start has run.
    page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
    yield page
    context.close()


def test_chat_streams_settings_apply_stop_works_and_model_loads_once(page, server):
    # 1. A message gets a reply that streams: its text is seen growing before the reply ends.
    send(page, "Tell me about cats.")
    lengths: set[int] = set()
    # Each look at the page records the reply's length, until the engine has finished it.
    wait_until(lambda: lengths.add(len(last_reply(page))) or server.usages(), 60, "the reply's end")
    wait_idle(page)
    first_answer = last_reply(page)
    assert len([n for n in lengths if n > 0]) >= 3, f"reply did not stream: saw lengths {sorted(lengths)}"
    assert first_answer
    shot(page, "01-streamed-reply")

    # 2. Settings: Temperature 0 and Max New Tokens 1, confirmed; the next reply is one token.
    page.click("#chat-settings-open-modal")
    set_slider(page, "temperature", "Home")
    set_slider(page, "max_new_tokens", "Home")
    shot(page, "02-settings-panel")
    page.click("#confirm")
    send(page, "And dogs?")
    usages = server.wait_for_usages(2)
    wait_idle(page)
    session, _prompt, cached, completion, _finish = usages[-1]
    assert completion == 1
    # The stats under the reply say what happened (every figure, one click on its line).
    details = open_stats(page, replies=2)
    expect(details.get_by_text("1 generated")).to_be_visible(timeout=10_000)
    expect(details.get_by_text("stopped at the Max New Tokens limit")).to_be_visible()
    assert len(page.locator('[data-step-type="assistant_message"]').all()) == 2
    shot(page, "03-one-token-reply")

    # 3. The second turn's prompt holds the first turn, and its cache was reused.
    second_prompt = server.prompts()[-1]
    assert "Tell me about cats." in second_prompt
    assert first_answer.split()[0] in second_prompt
    assert cached > 0

    # 4. The stop button ends a long reply early, in the engine.
    page.click("#chat-settings-open-modal")
    set_slider(page, "max_new_tokens", "End")
    page.click("#confirm")
    send(page, "Write a very long story about a dragon and a knight, with many chapters.")
    expect(page.locator("#stop-button")).to_be_visible(timeout=30_000)
    expect(page.locator('[data-step-type="assistant_message"]')).to_have_count(3, timeout=30_000)
    wait_until(lambda: len(last_reply(page)) >= 40, what="40 characters of the reply")
    page.click("#stop-button")
    usages = server.wait_for_usages(3)
    assert usages[-1][4] == "cancelled"
    assert usages[-1][3] < 1024
    wait_idle(page)
    shot(page, "04-stopped-reply")

    # 5. After all that (and settings changes), the model was loaded exactly once.
    assert server.log().count("loaded model") == 1
    assert all(u[0] == session for u in usages)


def test_oversized_message_gets_a_readable_error_and_the_chat_goes_on(page, server):
    send(page, "word " * 5000)
    error = page.get_by_text("does not fit the context")
    expect(error).to_be_visible(timeout=30_000)
    assert "Traceback" not in page.content()
    shot(page, "05-context-overflow")
    # The refused message is not kept in the history: the next one is answered normally.
    done = len(server.usages())
    send(page, "Hello again.")
    usages = server.wait_for_usages(done + 1)
    assert usages[-1][4] in ("stop", "length")
    assert "word word" not in server.prompts()[-1]


def test_a_full_context_offers_to_start_over_and_the_next_prompt_forgets_the_old_turns(page, server):
    done = len(server.usages())
    send(page, "word " * 3650)  # fits with room for a reply, then fills 90% of the 4096-token context
    server.wait_for_usages(done + 1, timeout=120)
    start_over = page.get_by_role("button", name="Start over")
    expect(start_over).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Keep the last exchange")).to_be_visible()
    shot(page, "08-context-full")
    start_over.click()
    expect(page.get_by_text("The model has forgotten the messages above.")).to_be_visible(timeout=15_000)
    send(page, "Hello again.")
    usages = server.wait_for_usages(done + 2)
    assert usages[-1][4] in ("stop", "length")
    assert "word word" not in server.prompts()[-1] and "Hello again." in server.prompts()[-1]
    assert usages[-1][1] < 100  # the new prompt holds the new question only


def test_missing_model_is_explained_in_the_chat(browser, tmp_path):
    broken = Server(tmp_path / "server.log", HEARTH_MODEL="no-such-model")
    try:
        broken.wait_ready()
        context = browser.new_context()
        page = context.new_page()
        page.goto(broken.url)
        expect(page.get_by_text("The model could not be loaded")).to_be_visible(timeout=60_000)
        expect(page.get_by_text("no-such-model").first).to_be_visible()
        shot(page, "06-missing-model")
        context.close()
    finally:
        broken.stop()


def test_streaming_off_sends_the_reply_whole(page, server):
    page.click("#chat-settings-open-modal")
    page.click("#streaming")
    page.click("#confirm")
    done = len(server.usages())
    send(page, "Tell me about the sea.")
    lengths: set[int] = set()
    wait_until(lambda: lengths.add(len(last_reply(page))) or len(server.usages()) > done, 60, "the end")
    wait_idle(page)
    lengths.add(len(last_reply(page)))
    assert server.usages()[-1][3] > 5  # a reply long enough that streaming would have shown its growth
    assert len([n for n in lengths if n > 0]) == 1, f"reply was streamed: saw lengths {sorted(lengths)}"


def test_editing_an_earlier_message_drops_later_turns_and_reuses_the_cache(page, server):
    for question in ("Tell me about cats.", "And dogs?"):
        send(page, question)
        expect(page.locator("#stop-button")).to_be_visible(timeout=30_000)
        wait_idle(page)
    done = len(server.usages())
    first = page.locator('[data-step-type="user_message"]').first
    first.hover()
    first.locator(".edit-message").click()
    page.fill("#edit-chat-input", "Tell me about birds.")
    page.click(".confirm-edit")
    usages = server.wait_for_usages(done + 1)
    wait_idle(page)
    prompt = server.prompts()[-1]
    assert "Tell me about birds." in prompt
    assert "Tell me about cats." not in prompt
    assert "And dogs?" not in prompt
    # The system prompt and the start of the first message were already cached: only the rest is new.
    _session, prompt_tokens, cached, _completion, _finish = usages[-1]
    assert 0 < cached < prompt_tokens
    shot(page, "07-edited-message")
