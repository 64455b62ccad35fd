"""The tables Chainlit's SQLAlchemy data layer reads and writes, and Hearth's presets, created by Hearth
on first use.

Chainlit's tables follow the schema it publishes for that data layer (https://docs.chainlit.io/data-layers/sqlalchemy,
for Chainlit 2.12: `steps` has `command`, `defaultOpen` and `modes`), written once as SQLAlchemy Core
tables so that each database gets its own types: on PostgreSQL `UUID`, `JSONB` and `TEXT[]` exactly as
published; on SQLite, which has none of them, text holding the id or the JSON (see `llm.web.data_layer` for
the values that must be converted on the way in and out).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateTable

ID = Uuid(as_uuid=False).with_variant(Text(), "sqlite")
"""Ids are UUID strings; SQLite keeps them as the text Chainlit sends (with dashes)."""
JSON_VALUE = JSON().with_variant(postgresql.JSONB(), "postgresql")
TAGS = postgresql.ARRAY(Text()).with_variant(JSON(), "sqlite")
"""A list of strings: `TEXT[]` on PostgreSQL, a JSON array on SQLite."""

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("identifier", Text, nullable=False, unique=True),
    Column("metadata", JSON_VALUE, nullable=False),
    Column("createdAt", Text),
)

threads = Table(
    "threads",
    metadata,
    Column("id", ID, primary_key=True),
    Column("createdAt", Text),
    Column("name", Text),
    Column("userId", ID, ForeignKey("users.id", ondelete="CASCADE")),
    Column("userIdentifier", Text),
    Column("tags", TAGS),
    Column("metadata", JSON_VALUE),
)

steps = Table(
    "steps",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("threadId", ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("parentId", ID),
    Column("streaming", Boolean, nullable=False),
    Column("waitForAnswer", Boolean),
    Column("isError", Boolean),
    Column("metadata", JSON_VALUE),
    Column("tags", TAGS),
    Column("input", Text),
    Column("output", Text),
    Column("createdAt", Text),
    Column("command", Text),
    Column("modes", JSON_VALUE),
    Column("start", Text),
    Column("end", Text),
    Column("generation", JSON_VALUE),
    Column("showInput", Text),
    Column("language", Text),
    Column("indent", Integer),
    Column("defaultOpen", Boolean),
    Column("autoCollapse", Boolean),
)

elements = Table(
    "elements",
    metadata,
    Column("id", ID, primary_key=True),
    Column("threadId", ID, ForeignKey("threads.id", ondelete="CASCADE")),
    Column("type", Text),
    Column("url", Text),
    Column("chainlitKey", Text),
    Column("name", Text, nullable=False),
    Column("display", Text),
    Column("objectKey", Text),
    Column("size", Text),
    Column("page", Integer),
    Column("language", Text),
    Column("forId", ID),
    Column("mime", Text),
    Column("props", JSON_VALUE),
    Column("autoPlay", Boolean),
    Column("playerConfig", JSON_VALUE),
)

feedbacks = Table(
    "feedbacks",
    metadata,
    Column("id", ID, primary_key=True),
    Column("forId", ID, nullable=False),
    Column("threadId", ID, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("value", Integer, nullable=False),
    Column("comment", Text),
)

# Hearth's own table (not Chainlit's): each user's presets of the settings panel, by name.
presets = Table(
    "presets",
    metadata,
    Column("id", ID, primary_key=True),
    Column("userIdentifier", Text, ForeignKey("users.identifier", ondelete="CASCADE"), nullable=False),
    Column("name", Text, nullable=False),
    Column("values", JSON_VALUE, nullable=False),
    Column("createdAt", Text),
    UniqueConstraint("userIdentifier", "name"),
)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (never alters or drops an existing one)."""
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all, checkfirst=True)


def schema_ddl(dialect: Dialect) -> list[str]:
    """The CREATE TABLE statements for `dialect`, in dependency order (for reading and for tests)."""
    return [str(CreateTable(table).compile(dialect=dialect)).strip() for table in metadata.sorted_tables]
