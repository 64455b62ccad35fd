"""Login modes, password hashing, the users CLI and the auth secret (real bcrypt, real files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
from llm.web.store import StoreConfig

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
