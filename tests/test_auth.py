"""Login modes, password hashing, the users CLI and the auth secret (real bcrypt, real files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from llm.settings import GenerationSettings
from llm.web.auth import (
    LOCAL_USER,
    AuthConfig,
    configured_access,
    ensure_auth_secret,
    hash_password,
    password_matches,
    read_users,
    write_users,
)
from llm.web.resume import history_from_thread, notice_ids, restore_conversation, saved_stats
from llm.web.store import StoreConfig
from llm.web.ui import history_before

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_users_from_the_environment(monkeypatch):
    for name in ("HEARTH_USER", "HEARTH_PASSWORD", "HEARTH_USERS_FILE", "CHAINLIT_AUTH_SECRET"):
        monkeypatch.delenv(name, raising=False)


def access_in(tmp_path: Path, host: str = "127.0.0.1", **auth: str):
    return configured_access(host, AuthConfig(**auth), StoreConfig(data_dir=tmp_path))


def add_user(tmp_path: Path, name: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm.web.users", "add", name],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"HEARTH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


# --- modes ------------------------------------------------------------------------------------------


def test_no_users_on_this_machine_signs_in_the_local_user_and_keeps_history(tmp_path):
    access = access_in(tmp_path)
    assert access.mode == "local"
    assert access.keeps_history
    assert access.local_user().identifier == LOCAL_USER


def test_no_users_on_the_network_turns_history_off(tmp_path):
    access = access_in(tmp_path, "0.0.0.0")
    assert access.mode == "off"
    assert not access.keeps_history


def test_a_user_in_the_file_turns_the_password_login_on(tmp_path):
    assert add_user(tmp_path, "alice", "correct horse").returncode == 0
    access = access_in(tmp_path)
    assert access.mode == "password"
    assert access.check_password("alice", "correct horse").identifier == "alice"
    assert access.check_password("alice", "wrong horse") is None
    assert access.check_password("mallory", "correct horse") is None


def test_env_user_logs_in_with_the_env_password(tmp_path):
    access = access_in(tmp_path, "0.0.0.0", user="ops", password="s3cret")
    assert access.mode == "password"
    assert access.check_password("ops", "s3cret").identifier == "ops"
    assert access.check_password("ops", "s3cret!") is None
    assert access.check_password("Ops", "s3cret") is None


def test_half_an_env_user_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HEARTH_USER", "ops")
    with pytest.raises(ValueError, match="both HEARTH_USER and HEARTH_PASSWORD"):
        access_in(tmp_path)


def test_a_user_added_while_the_app_runs_can_log_in_at_once(tmp_path):
    assert add_user(tmp_path, "alice", "one").returncode == 0
    access = access_in(tmp_path)
    assert access.check_password("bob", "two") is None
    assert add_user(tmp_path, "bob", "two").returncode == 0
    assert access.check_password("bob", "two").identifier == "bob"


# --- hashes and the users file ----------------------------------------------------------------------


def test_users_file_holds_bcrypt_hashes_not_passwords(tmp_path):
    result = add_user(tmp_path, "alice", "correct horse")
    assert result.returncode == 0, result.stderr
    assert "added alice" in result.stdout
    path = tmp_path / "users.json"
    text = path.read_text()
    assert "correct horse" not in text
    stored = json.loads(text)["alice"]["password_hash"]
    assert stored.startswith("$2b$")
    assert password_matches("correct horse", stored)
    assert path.stat().st_mode & 0o777 == 0o600


def test_adding_again_changes_the_password_and_remove_removes(tmp_path):
    add_user(tmp_path, "alice", "first")
    result = add_user(tmp_path, "alice", "second")
    assert "changed the password of alice" in result.stdout
    users = read_users(tmp_path / "users.json")
    assert password_matches("second", users["alice"]) and not password_matches("first", users["alice"])
    removed = subprocess.run(
        [sys.executable, "-m", "llm.web.users", "--file", str(tmp_path / "users.json"), "remove", "alice"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert removed.returncode == 0
    assert read_users(tmp_path / "users.json") == {}


def test_cli_refuses_empty_and_too_long_passwords(tmp_path):
    empty = add_user(tmp_path, "alice", "")
    assert empty.returncode == 1 and "empty" in empty.stderr
    long = add_user(tmp_path, "alice", "x" * 73)
    assert long.returncode == 1 and "72 bytes" in long.stderr
    assert not (tmp_path / "users.json").exists()


def test_password_matches_refuses_garbage_hashes_and_long_passwords():
    hashed = hash_password("pw")
    assert password_matches("pw", hashed)
    assert not password_matches("pw", "not-a-hash")
    assert not password_matches("x" * 100, hashed)
    assert not password_matches("pw", None)


def test_write_users_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "users.json"
    write_users(path, {"a": hash_password("1"), "b": hash_password("2")})
    write_users(path, {"b": read_users(path)["b"]})
    assert list(read_users(path)) == ["b"]


# --- the auth secret --------------------------------------------------------------------------------


def test_auth_secret_is_generated_once_and_kept(tmp_path):
    store = StoreConfig(data_dir=tmp_path)
    first = ensure_auth_secret(store)
    assert len(first) >= 48
    assert ensure_auth_secret(store) == first
    assert (tmp_path / "auth_secret").stat().st_mode & 0o777 == 0o600
    assert ensure_auth_secret(store, {"CHAINLIT_AUTH_SECRET": "given"}) == "given"


# --- resuming a thread ------------------------------------------------------------------------------


def thread_with(*steps: tuple[str, str, str, bool], metadata: dict | None = None) -> dict:
    return {
        "id": "t1",
        "metadata": metadata or {},
        "steps": [
            {"id": sid, "type": kind, "output": text, "isError": error} for sid, kind, text, error in steps
        ],
    }


def test_history_from_thread_keeps_the_exchanges_without_notices():
    thread = thread_with(
        ("1", "user_message", "Tell me about cats.", False),
        ("2", "assistant_message", "Hearth is busy.", True),
        ("3", "assistant_message", "Cats purr.", False),
        ("4", "run", "a chain step", False),
        ("5", "assistant_message", "", False),
    )
    assert history_from_thread(thread) == [HumanMessage("Tell me about cats."), AIMessage("Cats purr.")]
    assert notice_ids(thread) == {"2"}


async def test_resumed_notices_stay_out_of_the_next_prompt():
    from chainlit.context import init_http_context
    from chainlit.message import Message

    init_http_context()  # a Message takes its thread from the current chat
    messages = [
        Message(content="Hi", type="user_message", id="1"),
        Message(content="Generation failed: boom", type="assistant_message", id="2"),
        Message(content="Hello!", type="assistant_message", id="3"),
        Message(content="Next", type="user_message", id="4"),
    ]
    assert history_before(messages, messages[-1], notices={"2"}) == [HumanMessage("Hi"), AIMessage("Hello!")]


class _ChatSession:
    """What restore_conversation touches of a ChatSession, without loading a model."""

    def __init__(self) -> None:
        self.history: list = []
        self.settings = GenerationSettings()
        self.chat_template: str | None = None

    def apply(self, settings: GenerationSettings, chat_template: str | None = None) -> None:
        self.settings, self.chat_template = settings, chat_template


def test_restore_conversation_brings_back_history_and_saved_settings():
    conversation = _ChatSession()
    saved = {"chat_settings": {"temperature": 0.0, "max_new_tokens": 7, "system_prompt": ""}}
    thread = thread_with(("1", "user_message", "Hi", False), metadata=saved)
    assert restore_conversation(conversation, thread) == saved["chat_settings"]
    assert conversation.history == [HumanMessage("Hi")]
    assert conversation.settings.temperature == 0.0
    assert conversation.settings.max_new_tokens == 7


def test_restore_conversation_keeps_defaults_when_saved_settings_are_invalid():
    conversation = _ChatSession()
    thread = thread_with(metadata={"chat_settings": {"temperature": -5}})
    restore_conversation(conversation, thread)
    assert conversation.settings == GenerationSettings()


def test_saved_stats_come_from_the_steps_metadata_as_sqlite_returns_it_or_decoded():
    thread = {
        "id": "t",
        "steps": [
            {"id": "1", "type": "user_message", "metadata": "{}"},
            {"id": "2", "type": "assistant_message", "metadata": '{"hearth_stats": "12 prompt tokens"}'},
            {"id": "3", "type": "assistant_message", "metadata": {"hearth_stats": "7 prompt tokens"}},
            {"id": "4", "type": "assistant_message", "metadata": None},
        ],
    }
    assert saved_stats(thread) == {"2": "12 prompt tokens", "3": "7 prompt tokens"}
