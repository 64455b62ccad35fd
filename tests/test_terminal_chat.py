"""`python -m llm.chat` in a pseudo-terminal (pexpect): streaming, commands, Ctrl-C and Ctrl-D."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ">> "
STORY = "Write a long story about a dragon."


def start(**spawn) -> pexpect.spawn:
    """A terminal chat with the default model: greedy, long replies allowed, a system prompt."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "llm.chat", "--temperature", "0", "--max-new-tokens", "600", "--system-prompt", "Be kind."],
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 200),
        **spawn,
    )
    child.expect("Chatting with .*/help lists the commands")
    child.expect_exact(PROMPT)
    return child


@pytest.fixture
def chat():
    child = start()
    yield child
    if child.isalive():
        child.terminate(force=True)


def say(child: pexpect.spawn, text: str) -> None:
    """Type a line and wait for the terminal to echo it, so what follows is the program's answer."""
    child.sendline(text)
    child.expect_exact(text + "\r\n")


def command(child: pexpect.spawn, text: str) -> str:
    say(child, text)
    child.expect_exact(PROMPT)
    return child.before


def test_a_reply_streams_before_it_is_finished(chat):
    say(chat, STORY)
    chat.expect(r"\w+\W+\w+\W+\w+")  # the first words are on screen...
    with pytest.raises(pexpect.TIMEOUT):
        chat.expect_exact(PROMPT, timeout=0.3)  # ...while the reply is still being written
    chat.expect_exact(PROMPT, timeout=300)
    stats = command(chat, "/stats")
    assert "conversation: 3 messages" in stats  # system, user, bot


def test_ctrl_c_stops_the_reply_not_the_program(chat):
    say(chat, STORY)
    chat.expect(r"\w+\W+\w+\W+\w+")
    chat.sendintr()
    chat.expect_exact("[stopped]", timeout=30)
    chat.expect_exact(PROMPT, timeout=30)
    stats = command(chat, "/stats")
    assert "conversation: 3 messages" in stats  # what was shown stays in the chat
    assert "(cancelled)" in stats
    say(chat, "/exit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_ctrl_c_works_when_the_chat_was_started_with_it_ignored():
    """A shell without job control starts `cmd &` with SIGINT ignored, and exec keeps that: the chat
    still answers Ctrl-C at its own terminal."""
    child = start(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        say(child, STORY)
        child.expect(r"\w+\W+\w+\W+\w+")
        child.sendintr()
        child.expect_exact("[stopped]", timeout=30)
        child.expect_exact(PROMPT, timeout=30)
    finally:
        child.terminate(force=True)


def test_history_stays_in_the_kv_cache_and_reset_empties_it(chat):
    say(chat, "Hello!")
    chat.expect_exact(PROMPT)
    say(chat, "What did I just say?")
    chat.expect_exact(PROMPT)
    stats = command(chat, "/stats")
    assert "conversation: 5 messages" in stats
    prompt, cached = map(int, re.search(r"prompt (\d+) tokens, (\d+) of them cached", stats).groups())
    assert 0 < cached < prompt  # the second turn reused the first from the cache
    assert "[conversation cleared]" in command(chat, "/reset")
    assert "conversation: 1 message," in command(chat, "/stats")  # the system prompt only


def test_commands_help_and_unknown(chat):
    assert "/reset" in command(chat, "/help") and "Ctrl-C" in chat.before
    assert "unknown command /nope" in command(chat, "/nope")


def test_ctrl_c_at_the_prompt_keeps_the_chat_and_ctrl_d_exits(chat):
    chat.sendintr()
    chat.expect_exact("Ctrl-D or /exit quits")
    chat.expect_exact(PROMPT)
    chat.sendeof()
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "9"], "temperature"),
        (["--chat-template", "no-such-template"], "unknown chat template 'no-such-template'"),
        (["--model", "no-such-model"], "no model named 'no-such-model'"),
    ],
)
def test_bad_flags_are_refused_clearly(flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "llm.chat", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input="",
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
