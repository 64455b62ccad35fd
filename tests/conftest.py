"""Shared fixtures: the real default model, loaded once for the whole run, and Debian's Chromium for the
browser tests.

Playwright is imported by the browser fixture only: the GPU check (bench/gpu_check.sh) runs the tests
marked `gpu` on a machine that has no browser and no Playwright."""

from __future__ import annotations

import shutil

import pytest

from native import load_engine


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
    """Hearth's data folder for the run: nothing a test does (history, KV cache files) lands in the
    user's own."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("hearth-data")
    patch.setenv("HEARTH_DATA_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def engine():
    """The shared engine of the default model (SmolLM2-135M-Instruct Q4_1)."""
    return load_engine("default")


@pytest.fixture(scope="session")
def chat_prompt():
    """A chat-ml prompt the default model answers at length."""
    return "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (never `playwright install`), one per test module."""
    from playwright.sync_api import sync_playwright
    from support.browser import CHROMIUM_FLAGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
