"""Chainlit's SQLAlchemy data layer, made to work on SQLite as it does on PostgreSQL.

`SQLAlchemyDataLayer` writes raw SQL with bound parameters and was written against PostgreSQL. On SQLite
three things go wrong, and each would silently lose data (the layer logs a warning and returns None):

- a list (`tags`) or a dict (`modes`) bound as a parameter: sqlite3 refuses it, so the whole INSERT fails
  and the thread or message is not saved. Here lists and dicts are bound as JSON text on SQLite, and
  dicts as JSON text everywhere (asyncpg, too, wants JSONB as text).
- JSON columns come back as text, where PostgreSQL gives dicts and lists: a thread's `metadata` and
  `tags` and a step's `metadata`, `tags`, `generation` and `modes` reach the browser as strings (and
  booleans as 0 and 1). Here they are decoded, so every reader gets what it gets from PostgreSQL.
- foreign keys are off by default in SQLite, and the tables do not exist: the schema is created on
  first use (`llm.web.tables`), and each SQLite connection turns foreign keys and WAL on.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from sqlalchemy import event

from llm.web.tables import create_schema
from native import forget_session

# The result keys (column names and the aliases Chainlit's queries give them) that hold JSON.
JSON_RESULT_KEYS = frozenset(
    {
        "metadata",
        "tags",
        "generation",
        "modes",
        "thread_metadata",
        "thread_tags",
        "step_metadata",
        "step_tags",
        "step_generation",
        "step_modes",
    }
)
# ... and those that hold booleans, which SQLite returns as 0 and 1.
BOOL_RESULT_KEYS = frozenset(
    {"streaming", "waitForAnswer", "isError", "defaultOpen", "autoCollapse", "autoPlay"}
    | {"step_streaming", "step_waitforanswer", "step_iserror"}
)


class HearthDataLayer(SQLAlchemyDataLayer):
    """`SQLAlchemyDataLayer` that creates its own schema and behaves the same on SQLite and PostgreSQL."""

    def __init__(self, conninfo: str, **kwargs: Any) -> None:
        super().__init__(conninfo, **kwargs)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def ensure_schema(self) -> None:
        """Create the tables that are missing, once per process."""
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                await create_schema(self.engine)
                self._schema_ready = True

    async def execute_sql(self, query: str, parameters: dict) -> list[dict[str, Any]] | int | None:
        await self.ensure_schema()
        return await super().execute_sql(query, {k: self._bindable(v) for k, v in parameters.items()})

    async def create_step(self, step_dict: Any) -> None:
        # A command's press (Export, Import: an empty user message naming its command) is no part of
        # the thread: the chat drops it once the command has answered (llm/web/transfer.py). Its delete
        # would race Chainlit's create, which runs as a task of its own, so it is never written.
        if _is_command_press(step_dict):
            return
        await super().create_step(step_dict)

    async def create_element(self, element: Any) -> None:
        # Chainlit keeps an element's content in a file store (S3, GCS, Azure) and only its link in the
        # database; without one it logs a warning per element. Hearth's elements (a reply's stats line)
        # are not worth a file store: they are shown live and not kept.
        if self.storage_provider is not None:
            await super().create_element(element)

    async def delete_thread(self, thread_id: str) -> None:
        """A deleted thread takes its KV cache along (the engines' tiers and its files on disk)."""
        try:
            author: str | None = await self.get_thread_author(thread_id)
        except ValueError:  # a thread nobody wrote: no cache of it was kept for a user
            author = None
        await super().delete_thread(thread_id)
        await asyncio.to_thread(forget_session, thread_id, author)

    def _bindable(self, value: Any) -> Any:
        if isinstance(value, dict) or (self.is_sqlite and isinstance(value, list | tuple)):
            return json.dumps(value)
        return value

    def clean_result(self, obj: Any) -> Any:
        cleaned = super().clean_result(obj)
        if self.is_sqlite:
            return _decode_json(cleaned)
        return cleaned


def _is_command_press(step: dict[str, Any]) -> bool:
    return step.get("type") == "user_message" and bool(step.get("command")) and not step.get("output")


def _decode_json(obj: Any) -> Any:
    """Rows (lists of dicts) with their JSON text and 0/1 columns decoded, as PostgreSQL returns them."""
    if isinstance(obj, list):
        return [_decode_json(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _decode_value(key, value) for key, value in obj.items()}
    return obj


def _decode_value(key: str, value: Any) -> Any:
    if key in JSON_RESULT_KEYS:
        return _loads(value)
    if key in BOOL_RESULT_KEYS and isinstance(value, int):
        return bool(value)
    return value


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value  # text written by something else: leave it as it is


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the sidebar read while a reply is being written, and survives a killed server.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
