"""The history database: Chainlit's SQLAlchemy data layer through Hearth's adapter, on a real SQLite file
(and PostgreSQL where its server programs are installed), and Hearth's presets kept beside it.

Every test calls the data layer's own methods (the ones Chainlit's server calls) and reads the file back,
either through the layer or with the standard sqlite3 module, so a value that only looks right inside
the layer cannot pass.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from chainlit.context import init_http_context
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.user import User
from sqlalchemy.dialects import postgresql, sqlite
from support.rest import free_port

from llm.web.data_layer import HearthDataLayer
from llm.web.preset_store import PresetError, PresetStore
from llm.web.store import StoreConfig, async_database_url, data_dir, database_url, open_data_layer
from llm.web.tables import metadata, schema_ddl

TABLES = {"users", "threads", "steps", "elements", "feedbacks", "presets"}


@pytest.fixture
async def layer(tmp_path):
    layer = HearthDataLayer(f"sqlite+aiosqlite:///{tmp_path / 'hearth.db'}")
    yield layer
    await layer.close()


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else where Debian's `postgresql` package puts it."""
    if found := shutil.which(name):
        return found
    packaged = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))  # the newest version last
    return packaged[-1] if packaged else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a free loopback port (Debian's package; .ci/run installs it).
    Yields a function that creates an empty database and returns its URL."""
    if postgres_bin("initdb") is None:
        pytest.skip("PostgreSQL's server programs are not installed (apt-get install postgresql)")
    # initdb refuses to run as root: run the server as Debian's `postgres` user then.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    if as_owner:
        shutil.chown(home, "postgres")
    port = free_port()

    def run(program: str, *args: str) -> None:
        subprocess.run(
            [*as_owner, postgres_bin(program), *args], check=True, capture_output=True, timeout=120
        )

    data = home / "data"
    run("initdb", "-D", str(data), "-A", "trust", "-U", "hearth", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    run("pg_ctl", "-D", str(data), "-l", str(home / "server.log"), "-o", options, "-w", "start")
    names = (f"hearth_{i}" for i in range(1000))

    def new_database() -> str:
        name = next(names)
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "hearth", name)
        return f"postgresql://hearth@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_layer(request, tmp_path):
    """The data layer on SQLite and on a real PostgreSQL server, for tests that go through it only."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hearth.db'}"
    else:
        url = async_database_url(request.getfixturevalue("postgres")())
    layer = HearthDataLayer(url)
    yield layer
    await layer.close()


def rows(db: Path, query: str, *params) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(query, params).fetchall()


async def new_user(layer: HearthDataLayer, name: str):
    return await layer.create_user(User(identifier=name, metadata={"provider": "test"}))


async def new_thread(layer: HearthDataLayer, user, name: str, **kwargs) -> str:
    thread_id = str(uuid.uuid4())
    await layer.update_thread(thread_id, name=name, user_id=user.id, **kwargs)
    return thread_id


async def new_step(layer: HearthDataLayer, thread_id: str, kind: str, text: str, **extra) -> str:
    step_id = str(uuid.uuid4())
    step = {
        "id": step_id,
        "threadId": thread_id,
        "name": "Hearth" if kind == "assistant_message" else "local",
        "type": kind,
        "output": text,
        "streaming": False,
        "createdAt": await layer.get_current_timestamp(),
        "metadata": {},
        **extra,
    }
    init_http_context()  # as in Chainlit's server: outside a websocket chat, steps are written at once
    await layer.create_step(step)
    return step_id


# --- the schema -------------------------------------------------------------------------------------


async def test_first_use_creates_the_schema_in_the_data_folder(tmp_path):
    config = StoreConfig(data_dir=tmp_path / "data")
    layer = open_data_layer(config)
    try:
        assert await layer.get_user("nobody") is None  # the first query creates the tables
    finally:
        await layer.close()
    db = tmp_path / "data" / "hearth.db"
    assert {r["name"] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")} >= TABLES
    assert rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    # A second server on the same file finds the tables and keeps what is there.
    layer = open_data_layer(config)
    try:
        await new_user(layer, "alice")
    finally:
        await layer.close()
    layer = open_data_layer(config)
    try:
        assert (await layer.get_user("alice")).identifier == "alice"
    finally:
        await layer.close()


def test_schema_has_every_column_chainlit_writes():
    from chainlit.element import ElementDict
    from chainlit.step import StepDict
    from chainlit.types import Feedback as FeedbackType

    columns = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
    # Steps: everything Chainlit stores except what lives elsewhere (feedback) or in metadata (icon).
    assert set(StepDict.__annotations__) - {"feedback", "icon"} <= columns["steps"]
    assert set(ElementDict.__annotations__) - {"path"} <= columns["elements"]
    assert set(FeedbackType.__dataclass_fields__) <= columns["feedbacks"]


def test_postgres_ddl_matches_the_published_types():
    ddl = "\n".join(schema_ddl(postgresql.dialect()))
    assert "CREATE TABLE threads" in ddl
    assert "tags TEXT[]" in ddl
    assert "metadata JSONB" in ddl
    assert "id UUID NOT NULL" in ddl
    assert '"end" TEXT' in ddl  # a reserved word in PostgreSQL, quoted
    assert 'FOREIGN KEY("threadId") REFERENCES threads (id) ON DELETE CASCADE' in ddl
    lite = "\n".join(schema_ddl(sqlite.dialect()))
    assert "TEXT[]" not in lite and "JSONB" not in lite and "UUID" not in lite


# --- where the database is --------------------------------------------------------------------------


def test_database_url_defaults_to_sqlite_in_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path / "d"))
    url = database_url()
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'hearth.db'}"
    assert (tmp_path / "d").is_dir()
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700


def test_data_folder_defaults_to_the_platform_user_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("HEARTH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "hearth"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/hearth", "postgresql+asyncpg://u:p@db.example:5432/hearth"),
        ("postgresql://u:p@db/hearth", "postgresql+asyncpg://u:p@db/hearth"),
        ("postgresql://u:p@db/hearth?sslmode=require", "postgresql+asyncpg://u:p@db/hearth?ssl=require"),
        ("postgresql+asyncpg://u@db/hearth", "postgresql+asyncpg://u@db/hearth"),
        ("sqlite:////var/lib/hearth.db", "sqlite+aiosqlite:////var/lib/hearth.db"),
    ],
)
def test_database_url_gets_an_async_driver(monkeypatch, given, expected):
    assert async_database_url(given) == expected
    monkeypatch.setenv("DATABASE_URL", given)
    assert database_url() == expected


def test_unsupported_database_is_refused_by_name():
    with pytest.raises(ValueError, match="'mysql' database"):
        async_database_url("mysql://u:p@db/hearth")


def test_postgres_url_builds_a_postgres_data_layer_without_connecting():
    layer = HearthDataLayer(async_database_url("postgres://u:p@127.0.0.1:1/hearth"))
    assert layer.engine.dialect.name == "postgresql"
    assert layer.engine.dialect.driver == "asyncpg"
    assert not layer.is_sqlite
    # On PostgreSQL tags stay lists (TEXT[]) and dicts become JSON text (JSONB).
    assert layer._bindable(["a", "b"]) == ["a", "b"]
    assert json.loads(layer._bindable({"k": 1})) == {"k": 1}


# --- what SQLite used to lose -----------------------------------------------------------------------


async def test_thread_tags_and_metadata_round_trip_as_list_and_dict(layer, tmp_path):
    alice = await new_user(layer, "alice")
    thread_id = await new_thread(layer, alice, "Cats", tags=["pets", "cats"], metadata={"a": {"b": 1}})
    thread = await layer.get_thread(thread_id)
    assert thread is not None, "the thread was not saved"
    assert thread["tags"] == ["pets", "cats"]
    assert thread["metadata"] == {"a": {"b": 1}}
    assert thread["name"] == "Cats"
    assert thread["userIdentifier"] == "alice"
    stored = rows(tmp_path / "hearth.db", "SELECT tags FROM threads WHERE id = ?", thread_id)
    assert json.loads(stored[0]["tags"]) == ["pets", "cats"]


async def test_step_tags_metadata_and_flags_round_trip(any_layer):
    alice = await new_user(any_layer, "alice")
    thread_id = await new_thread(any_layer, alice, "Cats")
    step_id = await new_step(
        any_layer,
        thread_id,
        "assistant_message",
        "Cats purr.",
        tags=["answer"],
        metadata={"usage": {"prompt": 12}},
        modes={"model": "default"},
        isError=True,
    )
    step = (await any_layer.get_thread(thread_id))["steps"][0]
    assert step["id"] == step_id
    assert step["tags"] == ["answer"]
    assert step["metadata"] == {"usage": {"prompt": 12}}
    assert step["streaming"] is False
    assert step["isError"] is True
    same = await any_layer.get_step(step_id)
    assert same["tags"] == ["answer"] and same["metadata"] == {"usage": {"prompt": 12}}


async def test_a_command_press_is_not_kept_but_a_message_is(any_layer):
    """Export and Import send an empty user message naming the command: it is no part of the thread
    (the chat drops it once answered), and a delete could come before Chainlit's create of it."""
    alice = await new_user(any_layer, "alice")
    thread_id = await new_thread(any_layer, alice, "Cats")
    await new_step(any_layer, thread_id, "user_message", "", command="Import")
    asked = await new_step(any_layer, thread_id, "user_message", "Import my cat?", command="Import")
    said = await new_step(any_layer, thread_id, "user_message", "Cats purr.")
    empty = await new_step(any_layer, thread_id, "assistant_message", "")
    steps = (await any_layer.get_thread(thread_id))["steps"]
    assert sorted(s["id"] for s in steps) == sorted([asked, said, empty])


async def test_user_metadata_round_trips_as_dict(any_layer):
    alice = await any_layer.create_user(User(identifier="alice", metadata={"provider": "credentials"}))
    assert alice.metadata == {"provider": "credentials"}
    assert (await any_layer.get_user("alice")).id == alice.id


# --- threads per user, rename, delete ---------------------------------------------------------------


async def test_thread_list_holds_only_the_users_own_threads(any_layer):
    alice, bob = await new_user(any_layer, "alice"), await new_user(any_layer, "bob")
    cats = await new_thread(any_layer, alice, "Cats")
    await new_step(any_layer, cats, "user_message", "Tell me about cats.")
    dogs = await new_thread(any_layer, alice, "Dogs")
    await new_step(any_layer, dogs, "user_message", "And dogs?")
    secret = await new_thread(any_layer, bob, "Bob's")
    await new_step(any_layer, secret, "user_message", "Bob's secret.")

    page = await any_layer.list_threads(Pagination(first=20), ThreadFilter(userId=alice.id))
    assert {t["id"] for t in page.data} == {cats, dogs}
    page = await any_layer.list_threads(Pagination(first=20), ThreadFilter(userId=bob.id))
    assert [t["id"] for t in page.data] == [secret]
    # The sidebar's search looks into the messages.
    found = await any_layer.list_threads(Pagination(first=20), ThreadFilter(userId=alice.id, search="DOGS"))
    assert [t["id"] for t in found.data] == [dogs]
    # Chainlit's author check (resume, rename, delete) reads this.
    assert await any_layer.get_thread_author(secret) == "bob"


async def test_rename_keeps_metadata_and_tags(any_layer):
    alice = await new_user(any_layer, "alice")
    thread_id = await new_thread(
        any_layer, alice, "Cats", tags=["pets"], metadata={"chat_settings": {"x": 1}}
    )
    await any_layer.update_thread(thread_id, name="All about cats")
    thread = await any_layer.get_thread(thread_id)
    assert thread["name"] == "All about cats"
    assert thread["tags"] == ["pets"]
    assert thread["metadata"] == {"chat_settings": {"x": 1}}


async def test_delete_removes_the_thread_its_steps_and_their_feedback(layer, tmp_path):
    alice = await new_user(layer, "alice")
    keep = await new_thread(layer, alice, "Keep")
    kept_step = await new_step(layer, keep, "user_message", "Stay.")
    gone = await new_thread(layer, alice, "Gone")
    step_id = await new_step(layer, gone, "assistant_message", "Bye.")
    await layer.upsert_feedback(Feedback(forId=step_id, threadId=gone, value=1))

    await layer.delete_thread(gone)

    assert await layer.get_thread(gone) is None
    db = tmp_path / "hearth.db"
    assert rows(db, "SELECT id FROM steps WHERE threadId = ?", gone) == []
    assert rows(db, "SELECT id FROM feedbacks") == []
    assert [r["id"] for r in rows(db, "SELECT id FROM steps")] == [kept_step]
    assert (await layer.get_thread(keep))["name"] == "Keep"


# --- feedback -----------------------------------------------------------------------------------------


async def test_feedback_upsert_changes_the_one_row_and_delete_removes_it(layer, tmp_path):
    alice = await new_user(layer, "alice")
    thread_id = await new_thread(layer, alice, "Cats")
    step_id = await new_step(layer, thread_id, "assistant_message", "Cats purr.")
    db = tmp_path / "hearth.db"

    feedback_id = await layer.upsert_feedback(Feedback(forId=step_id, threadId=thread_id, value=1))
    assert [tuple(r) for r in rows(db, "SELECT id, forId, value, comment FROM feedbacks")] == [
        (feedback_id, step_id, 1, None)
    ]
    again = Feedback(id=feedback_id, forId=step_id, threadId=thread_id, value=0, comment="wrong")
    assert await layer.upsert_feedback(again) == feedback_id
    assert [tuple(r) for r in rows(db, "SELECT id, value, comment FROM feedbacks")] == [
        (feedback_id, 0, "wrong")
    ]
    # The thread shows it on its step (the browser draws the thumbs from this).
    step = (await layer.get_thread(thread_id))["steps"][0]
    assert step["feedback"] == {"forId": step_id, "id": feedback_id, "value": 0, "comment": "wrong"}
    # The sidebar's "feedback" filter finds it.
    disliked = await layer.list_threads(Pagination(first=5), ThreadFilter(userId=alice.id, feedback=0))
    assert [t["id"] for t in disliked.data] == [thread_id]

    assert await layer.delete_feedback(feedback_id)
    assert rows(db, "SELECT id FROM feedbacks") == []


# --- presets ------------------------------------------------------------------------------------------


async def test_presets_are_saved_listed_renamed_and_deleted_per_user(any_layer):
    await new_user(any_layer, "alice")
    await new_user(any_layer, "bob")
    alice, bob = PresetStore(any_layer, "alice"), PresetStore(any_layer, "bob")
    brief = {"temperature": 0.0, "system_prompt": "Be brief.", "model": "default", "chat_template": "auto"}
    assert await alice.save("  Brief  ", brief) == "Brief"
    await alice.save("Wild", {**brief, "temperature": 1.5})
    await bob.save("Brief", {**brief, "system_prompt": "Bob's."})
    assert [(p.name, p.values) for p in await alice.list()] == [
        ("Brief", brief),
        ("Wild", {**brief, "temperature": 1.5}),
    ]
    # Saving under a name again replaces that preset; bob's of the same name is his own.
    await alice.save("Brief", {**brief, "temperature": 0.2})
    assert (await alice.list())[0].values["temperature"] == 0.2
    assert [p.values["system_prompt"] for p in await bob.list()] == ["Bob's."]

    assert await alice.rename("Brief", "Terse") == "Terse"
    assert [p.name for p in await alice.list()] == ["Terse", "Wild"]
    with pytest.raises(PresetError, match="already a preset called 'Wild'"):
        await alice.rename("Terse", "Wild")
    with pytest.raises(PresetError, match="no preset called 'Brief'"):
        await alice.rename("Brief", "Other")
    with pytest.raises(PresetError, match="needs a name"):
        await alice.save("   ", brief)

    await alice.delete("Terse")
    assert [p.name for p in await alice.list()] == ["Wild"]
    assert [p.name for p in await bob.list()] == ["Brief"]  # untouched by alice's rename and delete
