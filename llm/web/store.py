"""Where Hearth keeps what outlives a server: the data folder and the chat-history database.

The data folder is `HEARTH_DATA_DIR`, else the platform's user data folder (`~/.local/share/hearth` on
Linux). The history lives in `hearth.db` (SQLite) there, unless `DATABASE_URL` names another database
(PostgreSQL: `postgresql://user:password@host/db`, run through asyncpg).
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from llm.web.data_layer import HearthDataLayer

DATABASE_FILE = "hearth.db"

# Drivers that SQLAlchemy's asyncio extension can run, for each database Hearth supports.
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_ALIASES = {"postgres": "postgresql"}


class StoreConfig(BaseSettings):
    """Where history is kept: from `HEARTH_DATA_DIR` and `DATABASE_URL` (or arguments)."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore", populate_by_name=True)

    data_dir: Path | None = Field(
        None, description="History, users and login secret (default: the platform's user data folder)."
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
        description="Another database for the history (PostgreSQL); default: SQLite in the data folder.",
    )


def data_dir(config: StoreConfig | None = None) -> Path:
    """The data folder (created, readable by its owner only, on first use)."""
    config = config or StoreConfig()
    path = config.data_dir or Path(platformdirs.user_data_dir("hearth", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def database_url(config: StoreConfig | None = None) -> str:
    """The history database's SQLAlchemy URL: `DATABASE_URL` made async, else SQLite in the data folder."""
    config = config or StoreConfig()
    if config.database_url:
        return async_database_url(config.database_url)
    return f"sqlite+aiosqlite:///{data_dir(config) / DATABASE_FILE}"


def async_database_url(url: str) -> str:
    """`url` with the asyncio driver this database needs (`postgres://` and `postgresql://` get asyncpg,
    `sqlite://` gets aiosqlite); libpq's `sslmode` becomes asyncpg's `ssl`. Raises ValueError for a
    database Hearth does not support."""
    parsed: URL = make_url(url)
    backend = _ALIASES.get(parsed.get_backend_name(), parsed.get_backend_name())
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(
            f"DATABASE_URL names a {backend!r} database: Hearth keeps history in PostgreSQL "
            "(postgresql://user:password@host/db) or SQLite (sqlite:///path/to/hearth.db)"
        )
    if "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"{backend}+{_ASYNC_DRIVERS[backend]}")
    elif parsed.drivername.startswith("postgres+"):
        parsed = parsed.set(drivername="postgresql+" + parsed.drivername.split("+", 1)[1])
    if parsed.get_driver_name() == "asyncpg" and "sslmode" in parsed.query:
        query = dict(parsed.query)
        query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=False)


def open_data_layer(config: StoreConfig | None = None) -> HearthDataLayer:
    """Chainlit's data layer on the configured database; the tables are created on first use."""
    return HearthDataLayer(database_url(config))
