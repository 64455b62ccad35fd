"""The seeds' examples in examples/ run on Hearth as written (only imports and model name changed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", f"examples.{name}"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result


def test_every_example_is_tested():
    tested = {"mlc_chat", "mlc_chat_config", "mlc_raw_text", "nano_chat", "nano_function_calling"}
    # These two run against a real server (test_rest_one_model.py) and in a real browser
    # (test_ctransformers_browser.py).
    tested |= {"mlc_rest", "ctransformers_chainlit"}
    assert {p.stem for p in (ROOT / "examples").glob("*.py")} == tested


def test_mlc_get_started_streams_two_turns_and_prints_statistics():
    out = run_example("mlc_chat").stdout
    first, _, second = out.partition("Statistics: ")
    assert first.strip() and second.split("\n", 1)[1].strip()  # a reply before and after the stats
    assert re.match(r"prefill: \d+\.\d tok/s, decode: \d+\.\d tok/s\n\n", second)


def test_mlc_chat_config_example_answers_twice():
    out = run_example("mlc_chat_config").stdout
    assert out.strip() and out.endswith("\n")


def test_mlc_raw_text_example_completes_both_prompts():
    out = run_example("mlc_raw_text").stdout
    # Each generate ends with StreamToStdout's newline; the example samples (temperature 0.5, no
    # seed), so a reply may be empty when the model opens with the "[INST]" stop string.
    assert out.count("\n") >= 2 and out.strip()


@pytest.mark.parametrize("name", ["nano_chat", "nano_function_calling"])
def test_nano_examples_chat_in_the_terminal(name):
    child = pexpect.spawn(
        sys.executable, ["-m", f"examples.{name}"], cwd=str(ROOT), encoding="utf-8", timeout=300
    )
    try:
        child.expect_exact(">> ")
        for question in ("Hello! Who are you?", "What is the date today?"):
            child.sendline(question)
            child.expect_exact(question + "\r\n")
            child.expect_exact(">> ")  # the reply, then the prompt for the next question
            assert re.search(r"\w+", child.before), child.before
    finally:
        child.terminate(force=True)
