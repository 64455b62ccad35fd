"""Who may use the browser chat, and whose threads are whose.

Three modes, chosen when the app starts:

- `password`: users from the users file (`users.json` in the data folder, or `HEARTH_USERS_FILE`; names
  and bcrypt hashes, written by `python -m llm.web.users add NAME`) and/or one user from `HEARTH_USER` and
  `HEARTH_PASSWORD`. Chainlit shows its login page; each user sees only their own threads.
- `local` (no users configured, the app listening on this machine only): no login page. Chainlit keeps
  thread history only for an authenticated user, so every browser is signed in, without a question, as
  the one local user; the history works as with a password.
- `off` (no users configured and the app listening on the network): no login and no history, since
  anyone who can reach the port would read it. Add a user to have both.

Chainlit signs its login cookie with `CHAINLIT_AUTH_SECRET`; when it is not set, a secret is generated
once and kept in the data folder, so logins survive restarts.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import bcrypt
from chainlit.user import User
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llm.net import is_loopback
from llm.web.store import StoreConfig, data_dir

log = logging.getLogger("hearth.auth")

USERS_FILE = "users.json"
SECRET_FILE = "auth_secret"
LOCAL_USER = "local"
MAX_PASSWORD_BYTES = 72
"""bcrypt uses at most 72 bytes of a password; longer ones are refused rather than cut silently."""

Mode = Literal["password", "local", "off"]


@cache
def _dummy_hash() -> bytes:
    """Checked against when the name is unknown, so that a wrong name costs as long as a wrong password
    (same cost factor as real hashes); made on first need, not at import."""
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt())


class AuthConfig(BaseSettings):
    """Where the users come from: `HEARTH_USERS_FILE`, `HEARTH_USER` and `HEARTH_PASSWORD` (or arguments)."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    users_file: Path | None = Field(None, description="The users file (default: data folder's users.json).")
    user: str | None = Field(None, description="One user's name, with `password`.")
    password: SecretStr | None = Field(None, description="That user's password.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> AuthConfig:
        if bool(self.user) != bool(self.password and self.password.get_secret_value()):
            raise ValueError("set both HEARTH_USER and HEARTH_PASSWORD, or neither")
        return self


def users_file(auth: AuthConfig | None = None, store: StoreConfig | None = None) -> Path:
    auth = auth or AuthConfig()
    return auth.users_file or data_dir(store) / USERS_FILE


def hash_password(password: str) -> str:
    encoded = password.encode()
    if not encoded:
        raise ValueError("the password is empty")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes, which bcrypt cannot use")
    return bcrypt.hashpw(encoded, bcrypt.gensalt()).decode()


def password_matches(password: str, hashed: str | None) -> bool:
    encoded = password.encode()
    if hashed is None or not encoded or len(encoded) > MAX_PASSWORD_BYTES:
        bcrypt.checkpw(b"x", _dummy_hash())
        return False
    try:
        return bcrypt.checkpw(encoded, hashed.encode())
    except ValueError:  # not a bcrypt hash: a hand-edited file
        log.error("the users file holds a password hash bcrypt cannot read")
        return False


def read_users(path: Path) -> dict[str, str]:
    """Name -> bcrypt hash, from the users file (empty when there is no file)."""
    if not path.exists():
        return {}
    users = json.loads(path.read_text())
    if not isinstance(users, dict) or not all(isinstance(v, dict) for v in users.values()):
        raise ValueError(f"{path} is not a Hearth users file ({{name: {{password_hash: ...}}}})")
    return {name: entry["password_hash"] for name, entry in users.items()}


def write_users(path: Path, users: Mapping[str, str]) -> None:
    """Replace the users file with `users` (name -> hash), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps({n: {"password_hash": h} for n, h in sorted(users.items())}, indent=2))
    partial.replace(path)


@dataclass(frozen=True)
class Access:
    """The login mode and where its users come from."""

    mode: Mode
    users_path: Path
    env_user: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def keeps_history(self) -> bool:
        return self.mode != "off"

    def check_password(self, name: str, password: str) -> User | None:
        """The user `name` if `password` is theirs (the users file is read again on every login, so a
        user added or removed while the app runs counts at once), else None."""
        if self.env_user is not None and hmac.compare_digest(name.encode(), self.env_user[0].encode()):
            ok = hmac.compare_digest(password.encode(), self.env_user[1].encode())
        else:
            ok = password_matches(password, read_users(self.users_path).get(name))
        if not ok:
            log.info("refused a login as %r", name)
            return None
        return _user(name, "credentials")

    def local_user(self) -> User:
        return _user(LOCAL_USER, "local")


def _user(name: str, provider: str) -> User:
    return User(identifier=name, metadata={"provider": provider})


def configured_access(host: str, auth: AuthConfig | None = None, store: StoreConfig | None = None) -> Access:
    """The login mode for an app listening on `host`, from the users file and the environment."""
    auth = auth or AuthConfig()
    path = users_file(auth, store)
    from_env = (auth.user, auth.password.get_secret_value()) if auth.user and auth.password else None
    if from_env or read_users(path):
        return Access("password", path, from_env)
    if is_loopback(host):
        return Access("local", path)
    log.warning(
        "Hearth listens on %s with no users: chat history is off. Add a user "
        "(python -m llm.web.users add NAME) to sign in and keep history.",
        host,
    )
    return Access("off", path)


def ensure_auth_secret(store: StoreConfig | None = None, env: Mapping[str, str] = os.environ) -> str:
    """`CHAINLIT_AUTH_SECRET` from the environment, else from the data folder (generated there the first
    time). Returns the secret; the caller puts it in the environment, where Chainlit reads it."""
    if secret := env.get("CHAINLIT_AUTH_SECRET"):
        return secret
    path = data_dir(store) / SECRET_FILE
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(secrets.token_urlsafe(48))
        partial.replace(path)
    return path.read_text().strip()
