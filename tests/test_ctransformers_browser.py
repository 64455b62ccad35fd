"""Seed 002's Chainlit + LangChain + CTransformers app (examples/ctransformers_chainlit.py: the
tutorial's code with only its imports and model path changed) answers in a real browser, and its
settings panel reaches the model: Max New Tokens at 0 gives one token, as ctransformers did."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect
from support.browser import Server, last_reply, send, set_slider, shot, wait_idle
from support.wait import wait_until

from native.builds import installed_builds, loaded_build

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")


def avx2_build() -> dict[str, str]:
    """The environment that runs the app on llama.cpp's AVX2 build, which its `lib="avx2"` asks for."""
    if loaded_build().kind == "avx2":
        return {}
    found = [b for b in installed_builds() if b.kind == "avx2"]
    if not found:
        pytest.skip("the app asks for lib='avx2' and no AVX2 build is installed: `make kernel-test ISA=avx2`")
    return {"LLAMA_CPP_LIB_PATH": str(found[0].folder)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("ct-chainlit") / "server.log"
    server = Server(log, app="examples/ctransformers_chainlit.py", **avx2_build())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_tutorial_app_answers_and_its_settings_reach_the_model(browser, server):
    # The app configures no logging (a seed's app does not): what happened is read from the page.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(server.url)
        page.wait_for_selector("#chat-settings-open-modal", timeout=60_000)
        send(page, "What is the capital of France?")
        wait_until(lambda: last_reply(page).strip(), 180, "the tutorial app's reply")
        wait_idle(page)
        first = last_reply(page).strip()
        assert len(first.split()) > 1, first  # Max New Tokens 128: more than one token
        shot(page, "ct-01-reply")

        # Max New Tokens to 0 (the slider's Home): setup_agent builds a new CTransformers with it.
        page.click("#chat-settings-open-modal")
        set_slider(page, "Max New Tokens", "Home")
        page.click("#confirm")
        send(page, "Tell me a long story about a dragon.")
        replies = page.locator('[data-step-type="assistant_message"]')
        expect(replies).to_have_count(2, timeout=180_000)
        wait_idle(page)
        second = last_reply(page).strip()
        # ctransformers counts after each token, so 0 still gives one: a single token, at most a word.
        assert len(second.split()) <= 1 and len(second) <= 16, second
        shot(page, "ct-02-one-token")
    finally:
        context.close()
