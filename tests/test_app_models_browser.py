"""The app's models, prompt and states in a real browser (Debian's Chromium) on the real catalog models.

One server (2 slots, a fresh models folder where Gemma is assembled on first use) serves every test;
what reached the engine is read from its debug log: the exact prompt, the SamplingParams, and one
usage line per request naming the model that served it.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest
from playwright.sync_api import Page, expect
from support.browser import Server, last_reply, open_stats, send, set_slider, shot, wait_idle
from support.wait import wait_until

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")

USAGE = re.compile(
    r"model=(\S+) session=(\S+) slot=\d+ prompt=(\d+) cached=(\d+)(?: \(\w+\))? completion=(\d+) finish=(\w+)"
)
SAMPLING = re.compile(r"sampling for session (\S+): SamplingParams\((.*)\)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    server = Server(
        tmp_path_factory.mktemp("chainlit") / "server.log", HEARTH_PARALLEL="2", HEARTH_MODELS_DIR=str(models)
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def open_chat(browser, server) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)  # websocket up, chat started
    return page


@pytest.fixture
def page(browser, server):
    page = open_chat(browser, server)
    yield page
    page.context.close()


def usages(server: Server) -> list[tuple[str, str, int, int, int, str]]:
    return [(m, s, int(p), int(c), int(n), f) for m, s, p, c, n, f in USAGE.findall(server.log())]


def wait_for_usages(server: Server, count: int, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(found := usages(server)) >= count:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"expected {count} finished requests, log:\n{server.log()[-3000:]}")


def choose(page: Page, select_id: str, option: str) -> None:
    page.click(f"#{select_id}")
    page.get_by_role("option", name=option, exact=True).click()


def test_two_chats_stream_at_the_same_time(browser, server):
    first, second = open_chat(browser, server), open_chat(browser, server)
    try:
        done = len(usages(server))
        send(first, "Write a long story about a dragon.")
        send(second, "Write a long story about a knight.")
        grew: dict[str, set[int]] = {"first": set(), "second": set()}

        def either_ended() -> bool:
            grew["first"].add(len(last_reply(first)))
            grew["second"].add(len(last_reply(second)))
            return len(usages(server)) > done

        wait_until(either_ended, 120, "either reply's end")
        # Both replies had text (and kept growing) before either finished: the engine interleaved them.
        assert len([n for n in grew["first"] if n > 0]) >= 2, grew
        assert len([n for n in grew["second"] if n > 0]) >= 2, grew
        finished = wait_for_usages(server, done + 2)[-2:]
        assert finished[0][1] != finished[1][1]  # two sessions
        wait_idle(first)
        wait_idle(second)
    finally:
        first.context.close()
        second.context.close()


def test_a_chat_waiting_for_a_slot_is_told_its_place_and_answered_when_one_frees(browser, server):
    first, second, third = (open_chat(browser, server) for _ in range(3))
    try:
        for page in (first, second):  # replies long enough to keep both slots busy until stopped
            page.click("#chat-settings-open-modal")
            set_slider(page, "max_new_tokens", "End")
            page.click("#confirm")
        done = len(usages(server))
        send(first, "Write a long story about a dragon.")
        send(second, "Write a long story about a knight.")
        for page in (first, second):  # both slots are generating
            expect(page.locator("#stop-button")).to_be_visible(timeout=30_000)
            expect(page.locator('[data-step-type="assistant_message"]').last).not_to_be_empty(timeout=30_000)
        send(third, "Say hello.")
        notice = third.get_by_text("yours is number 1 in the queue")
        expect(notice).to_be_visible(timeout=30_000)
        shot(third, "m07-waiting-for-a-slot")
        first.click("#stop-button")  # a slot frees up: the waiting chat gets it
        expect(notice).to_have_count(0, timeout=30_000)
        wait_idle(third)
        assert last_reply(third).strip()
        second.click("#stop-button")
        finished = wait_for_usages(server, done + 3)[-3:]
        assert sorted(f for *_, f in finished).count("cancelled") == 2
    finally:
        for page in (first, second, third):
            page.context.close()


def test_panel_settings_are_what_the_engine_receives_and_the_prompt_is_shown(page, server):
    page.click("#chat-settings-open-modal")
    expect(page.locator("#model")).to_be_visible()
    set_slider(page, "temperature", "Home")  # 0.0
    set_slider(page, "top_p", "End")  # 1.0
    set_slider(page, "top_k", "Home")
    for _ in range(3):
        set_slider(page, "top_k", "ArrowRight")  # 3
    set_slider(page, "repetition_penalty", "End")  # 2.0
    set_slider(page, "max_new_tokens", "Home")
    for _ in range(7):
        set_slider(page, "max_new_tokens", "ArrowRight")  # 8
    choose(page, "chat_template", "llama-2")
    page.locator("#model").scroll_into_view_if_needed()
    shot(page, "m00-settings-panel-model-and-template")
    page.fill("#system_prompt", "You are a pirate.")
    page.click("#show_prompt")
    shot(page, "m01-settings-panel-with-model-picker")
    page.click("#confirm")
    done = len(usages(server))
    send(page, "Where is the treasure?")
    wait_for_usages(server, done + 1)
    wait_idle(page)

    session, params = SAMPLING.findall(server.log())[-1]
    assert "temperature=0.0," in params
    assert "top_p=1.0," in params
    assert "top_k=3," in params
    assert "repetition_penalty=2.0," in params
    assert "max_new_tokens=8," in params
    prompt = server.prompts()[-1]
    assert "[INST]" in prompt and "You are a pirate." in prompt and "Where is the treasure?" in prompt
    assert "<|im_start|>" not in prompt  # the model's own template was overridden
    # The prompt step shows the same prompt and the template's stop strings.
    page.get_by_text("Used prompt").last.click()
    expect(page.get_by_text("[INST]").last).to_be_visible(timeout=10_000)
    expect(page.get_by_text("Stop strings:").last).to_be_visible()
    shot(page, "m02-show-prompt-step")


def test_a_stopped_reply_shows_its_stats_and_the_chat_goes_on(page, server):
    done = len(usages(server))
    send(page, "Write a very long story about a dragon and a knight, with many chapters.")
    expect(page.locator("#stop-button")).to_be_visible(timeout=30_000)
    wait_until(lambda: len(last_reply(page)) >= 40, what="40 characters of the reply")
    page.click("#stop-button")
    found = wait_for_usages(server, done + 1)
    assert found[-1][5] == "cancelled"
    details = open_stats(page, replies=1, timeout=15_000)
    expect(details.get_by_text("stopped by you")).to_be_visible()
    expect(details.get_by_text(f"{found[-1][4]} generated")).to_be_visible()
    shot(page, "m03-stopped-reply")
    wait_idle(page)
    send(page, "Hello again.")
    assert wait_for_usages(server, done + 2)[-1][5] in ("stop", "length")
    wait_idle(page)


def test_regenerate_asks_again_from_the_cached_prompt(page, server):
    done = len(usages(server))
    send(page, "Name a colour.")
    first = wait_for_usages(server, done + 1)[-1]
    wait_idle(page)
    expect(page.get_by_text("Regenerate")).to_have_count(1, timeout=10_000)
    shot(page, "m04-reply-with-stats")
    page.get_by_text("Regenerate").click()
    second = wait_for_usages(server, done + 2)[-1]
    wait_idle(page)
    assert second[1] == first[1]  # same session
    assert second[2] == first[2]  # the same prompt again ...
    assert second[3] >= first[2] - 1  # ... all of it cached (the last token is replayed for its logits)
    assert server.prompts()[-1] == server.prompts()[-2]
    expect(page.locator('[data-step-type="user_message"]')).to_have_count(1)  # replaced, not added


def test_while_its_person_reads_a_chat_has_the_next_turns_separator_cached(page, server):
    # Greedy, so that the reply is the same every run (a sampled one may not tokenize back the same).
    page.click("#chat-settings-open-modal")
    set_slider(page, "temperature", "Home")  # 0.0
    page.click("#confirm")
    done = len(usages(server))
    send(page, "Name a colour.")
    first = wait_for_usages(server, done + 1)[-1]
    wait_idle(page)
    time.sleep(0.5)  # reading the reply: the engine computes `<|im_end|>\n<|im_start|>user\n` meanwhile
    send(page, "And another one?")
    second = wait_for_usages(server, done + 2)[-1]
    wait_idle(page)
    shot(page, "m08-second-turn-from-the-cache")
    assert second[1] == first[1]
    assert "temperature=0.0," in SAMPLING.findall(server.log())[-1][1]
    # The first prompt, every token of the reply, and chat-ml's 5-token separator came from the cache.
    assert second[3] == first[2] + first[4] + 5


def test_switching_model_mid_chat_answers_from_the_new_model_over_the_same_history(page, server):
    done = len(usages(server))
    send(page, "My name is Ada.")
    wait_for_usages(server, done + 1)
    wait_idle(page)
    page.click("#chat-settings-open-modal")
    choose(page, "model", "gemma-3-270m, assembled on first use (241.4 MiB)")
    page.click("#confirm")
    expect(page.get_by_text("Loading gemma-3-270m…")).to_be_visible(timeout=10_000)
    shot(page, "m05-loading-model")
    expect(page.get_by_text("gemma-3-270m ready", exact=False)).to_be_visible(timeout=300_000)
    send(page, "What is my name?")
    found = wait_for_usages(server, done + 2)
    wait_idle(page)
    model, _session, _prompt, _cached, _n, _finish = found[-1]
    assert model == "gemma-3-270m"
    prompt = server.prompts()[-1]
    # The same conversation, in Gemma's template (the log shows the prompt's repr: "\n" escaped).
    assert r"<start_of_turn>user\nMy name is Ada.<end_of_turn>" in prompt
    expect(open_stats(page, replies=2).get_by_text("gemma-3-270m", exact=True)).to_be_visible()
    shot(page, "m06-reply-from-the-new-model")

    # Back to the default model: it is still loaded (other chats may use it), not loaded again.
    page.click("#chat-settings-open-modal")
    choose(page, "model", "default")
    page.click("#confirm")
    expect(page.get_by_text("default ready", exact=False)).to_be_visible(timeout=60_000)
    send(page, "And now?")
    found = wait_for_usages(server, done + 3)
    wait_idle(page)
    assert found[-1][0] == "SmolLM2-135M-Instruct.Q4_1"
    log = server.log()
    assert log.count("loaded model SmolLM2-135M-Instruct.Q4_1.gguf") == 1
    assert log.count("loaded model gemma-3-270m.gguf") == 1
