"""The KV cache tiers (native/prefix_cache.py): slots, RAM and disk under one prefix index.

Each test builds engines of its own (small slot counts, its own data folder, its own limits) on the
real catalog models, and compares greedy replies restored from a tier with replies computed from
scratch. "From scratch" is a request of another user: no cache is ever shared between users.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from support.wait import wait_until

import native.engine
from native import SamplingParams
from native.engine import Engine
from native.gguf_info import inspect_gguf
from native.hardware import choose_device
from native.kv_tiers import CacheConfig
from native.prefix_index import PrefixIndex
from native.resolve import resolve_model

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=24)
MODELS = ["default", "gemma-3-270m"]


def new_engine(model: str, data: Path, parallel: int = 2, n_ctx: int = 2048, **cache) -> Engine:
    info = inspect_gguf(resolve_model(model).resolve())
    config = CacheConfig(data_dir=data, cache_idle_s=cache.pop("cache_idle_s", 0.0), **cache)
    return Engine(info, choose_device("cpu"), n_ctx=n_ctx, parallel=parallel, n_threads=2, cache=config)


def long_text(words: int, seed: str = "") -> str:
    """A plain-text document of about 2 tokens a word: both models continue it happily."""
    return f"Notes {seed}. " + " ".join(f"item {i} is {'red' if i % 3 else 'blue'}," for i in range(words))


def scratch(engine: Engine, prompt: str) -> str:
    """The greedy reply computed with nothing cached: a user nobody else is."""
    completion = engine.submit(prompt, GREEDY, user=f"scratch-{uuid.uuid4()}").result(300)
    assert completion.usage.cached_tokens == 0
    return completion.text


@pytest.fixture
def engines():
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


# -- the index ----------------------------------------------------------------------------------------


def test_prefix_index_finds_the_longest_shared_prefix_per_owner():
    index = PrefixIndex()
    system = list(range(100))
    a, b, c = object(), object(), object()
    index.add(a, [*system, 1, 2, 3], "u")
    index.add(b, [*system, 7, 8], "u")
    index.add(c, [*system, 1, 2, 3, 4, 5], "v")
    every = lambda holder, shared: shared  # noqa: E731
    assert index.best([*system, 1, 2, 9], "u", every) == (a, 102)
    assert index.best([*system, 7, 8, 9], "u", every) == (b, 102)
    assert index.best([*system, 5], "u", every)[1] == 100  # one system prompt under both
    assert index.best([*system, 1, 2, 3, 4], "w", every) == (None, 0)  # another owner's: never
    # A holder that may not serve (a busy slot) gives way to the next best.
    assert index.best([*system, 1, 2, 9], "u", lambda h, n: None if h is a else n) == (b, 100)
    index.discard(a)
    assert index.best([*system, 1, 2, 3], "u", every) == (b, 100)
    assert len(index) == 2 and set(index.holders()) == {b, c}


# -- restores equal replies from scratch -------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_a_conversation_evicted_to_ram_continues_exactly(model, tmp_path, engines):
    engine = new_engine(model, tmp_path, parallel=1, cache_disk=0)
    engines.append(engine)
    document = long_text(150, model)
    assert len(engine.tokenize(document)) > 1000
    first = engine.submit(document, GREEDY, user="u").result(300)
    # The only slot goes to another conversation: the first one's state moves to RAM.
    engine.submit(long_text(40, "other"), GREEDY, user="u").result(300)
    assert engine.stats()["cache"]["ram"]["entries"] >= 1
    follow = document + first.text + " And the next item is"
    restored = engine.submit(follow, GREEDY, user="u").result(300)
    assert restored.usage.cached_from == "ram"
    assert restored.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 4
    assert restored.text == scratch(engine, follow)


@pytest.mark.parametrize("model", MODELS)
def test_a_session_restored_from_disk_after_a_restart_continues_exactly(model, tmp_path, engines):
    before = new_engine(model, tmp_path)
    document = long_text(150, model)
    first = before.submit(document, GREEDY, session="thread-1", user="u").result(300)
    before.close()  # a clean stop writes every session's state
    files = list((tmp_path / "kv").glob("*.kv"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "kv").stat().st_mode & 0o777 == 0o700

    after = new_engine(model, tmp_path)
    engines.append(after)
    follow = document + first.text + " And the next item is"
    restored = after.submit(follow, GREEDY, session="thread-1", user="u").result(300)
    assert restored.usage.cached_from == "disk"
    assert restored.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 4
    assert restored.text == scratch(after, follow)
    disk = after.stats()["cache"]["disk"]
    assert disk["hits"] == 1 and disk["tokens_saved"] == restored.usage.cached_tokens


def test_gemma_regenerates_a_reply_longer_than_its_window_from_a_checkpoint(tmp_path, engines):
    """Gemma 3's cache keeps only its 512-token window in most layers: after a 600-token reply it no
    longer holds the positions a regenerated reply would start from, so the prompt's state was kept
    as a checkpoint when the prompt had been read."""
    engine = new_engine("gemma-3-270m", tmp_path, parallel=1, cache_disk=0)
    engines.append(engine)
    prompt = long_text(100, "window")
    assert len(engine.tokenize(prompt)) > 600
    long_reply = SamplingParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=600)
    first = engine.submit(prompt, long_reply, user="u").result(600)
    assert first.usage.completion_tokens == 600
    again = engine.submit(prompt, GREEDY, user="u").result(300)  # regenerate: the same prompt
    assert again.usage.cached_from == "ram"
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
    assert again.text == scratch(engine, prompt)


def test_a_sessions_state_is_written_once_it_has_been_idle(tmp_path, engines):
    engine = new_engine("default", tmp_path, cache_idle_s=0.2)
    engines.append(engine)
    engine.submit(long_text(60), GREEDY, session="s", user="u").result(60)
    folder = tmp_path / "kv"
    wait_until(lambda: list(folder.glob("*.kv")), what="the idle session's file")
    assert engine.stats()["cache"]["disk"]["stores"] == 1


def test_a_deleted_sessions_cache_leaves_every_tier(tmp_path, engines):
    engine = new_engine("default", tmp_path, parallel=1)
    engines.append(engine)
    document = long_text(100)
    first = engine.submit(document, GREEDY, session="doomed", user="u").result(60)
    engine.submit(long_text(60, "x"), GREEDY, session="other", user="u").result(60)  # doomed -> RAM
    wait_until(lambda: len(list((tmp_path / "kv").glob("*.kv"))) == 2, what="both sessions on disk")
    engine.forget_session("doomed", user="u")
    assert len(list((tmp_path / "kv").glob("*.kv"))) == 1
    again = engine.submit(document + first.text, GREEDY, user="u").result(60)
    assert again.usage.cached_tokens < 10  # nothing of it is left anywhere


# -- files that do not fit ---------------------------------------------------------------------------


def rewrite_header(path: Path, **changes) -> None:
    raw = path.read_bytes()
    line, body = raw.split(b"\n", 1)
    header = json.loads(line) | changes
    head = json.dumps(header, separators=(",", ":")).encode().ljust(len(line))
    assert len(head) == len(line)
    path.write_bytes(head + b"\n" + body)


@pytest.mark.parametrize(
    "spoil",
    ["flipped bytes", "truncated", "another model", "another build", "another context", "not a cache"],
)
def test_a_spoilt_cache_file_is_ignored_and_the_reply_is_right(spoil, tmp_path, engines):
    before = new_engine("default", tmp_path)
    document = long_text(100)
    first = before.submit(document, GREEDY, session="t", user="u").result(300)
    before.close()
    [path] = (tmp_path / "kv").glob("*.kv")
    size = path.stat().st_size
    if spoil == "flipped bytes":
        with path.open("r+b") as f:
            f.seek(size - 5000)
            f.write(b"\xff" * 64)
    elif spoil == "truncated":
        with path.open("r+b") as f:
            f.truncate(size // 2)
    elif spoil == "not a cache":
        path.write_bytes(b"\x00" * 4096)
    else:
        field = {"another model": "model", "another build": "build", "another context": "context"}[spoil]
        rewrite_header(path, **{field: "f" * 32})

    after = new_engine("default", tmp_path)
    engines.append(after)
    follow = document + first.text + " And then"
    reply = after.submit(follow, GREEDY, session="t", user="u").result(300)
    assert reply.usage.cached_from != "disk"
    assert reply.text == scratch(after, follow)
    disk = after.stats()["cache"]["disk"]
    assert disk["hits"] == 0
    assert disk["rejected"] == (0 if spoil.startswith("another") else 1)


# -- bounds and owners -------------------------------------------------------------------------------


def test_neither_tier_ever_exceeds_its_bound(tmp_path, engines):
    ram_mib, disk_mib = 12, 16
    engine = new_engine("default", tmp_path, parallel=2, cache_ram=ram_mib, cache_disk=disk_mib)
    engines.append(engine)
    folder = tmp_path / "kv"
    conversations = {i: long_text(40 + 10 * i, str(i)) for i in range(8)}
    for _turn in range(3):
        for i, text in conversations.items():
            reply = engine.submit(text, GREEDY, session=f"s{i}", user="u").result(120)
            conversations[i] = text + reply.text + f" then {i},"
            cache = engine.stats()["cache"]
            assert cache["ram"]["bytes"] <= ram_mib * 2**20
            on_disk = sum(p.stat().st_size for p in folder.glob("*.kv")) if folder.exists() else 0
            assert on_disk <= disk_mib * 2**20
    cache = engine.stats()["cache"]
    assert cache["ram"]["evictions"] > 0 and cache["disk"]["evictions"] > 0  # the bounds were reached
    assert cache["ram"]["hits"] > 0


def test_one_users_cache_never_serves_another_user(tmp_path, engines):
    before = new_engine("default", tmp_path, parallel=1)
    document = long_text(100)
    alice = before.submit(document, GREEDY, session="t", user="alice").result(120)
    follow = document + alice.text + " Next"
    # Her session's name, her tokens, another user: her slot goes to RAM, and nothing of it serves him.
    bob = before.submit(follow, GREEDY, session="t", user="bob").result(120)
    assert bob.usage.cached_tokens == 0
    before.close()

    after = new_engine("default", tmp_path, parallel=1)
    engines.append(after)
    assert after.submit(follow, GREEDY, user="mallory").result(120).usage.cached_tokens == 0
    hers = after.submit(follow, GREEDY, user="alice").result(120)
    assert hers.usage.cached_from == "disk" and hers.usage.cached_tokens > 300


# -- every face, with or without a session -----------------------------------------------------------


def test_langchain_without_session_ids_reuses_each_conversations_own_cache(tmp_path, engines):
    from langchain_core.messages import HumanMessage

    from llm import ChatHearth

    engine = new_engine("default", tmp_path, parallel=2)  # fewer slots than conversations
    engines.append(engine)
    chat = ChatHearth(engine=engine, temperature=0.0, max_new_tokens=24)  # no session_id, as most code
    histories = [[HumanMessage(f"Conversation {i}: tell me about the number {i * 11}.")] for i in range(4)]
    previous: list[int | None] = [None] * 4
    for turn in range(3):
        for i, history in enumerate(histories):
            reply = chat.invoke(history)
            usage = reply.usage_metadata
            if previous[i] is not None:
                assert usage["input_token_details"]["cache_read"] >= previous[i] - 4
            previous[i] = usage["input_tokens"] + usage["output_tokens"]
            history += [reply, HumanMessage(f"And then? ({turn})")]
    assert engine.stats()["cache"]["ram"]["hits"] > 0


def test_one_system_prompt_is_computed_once_for_many_conversations(tmp_path, engines):
    engine = new_engine("default", tmp_path, parallel=4)
    engines.append(engine)
    system = "You are a careful assistant. Follow these rules. " + long_text(60, "rules")
    first = engine.submit(system + "\nUser: Hi, I am Ann.\nAssistant:", GREEDY).result(60)
    assert first.usage.cached_tokens == 0
    for name in ("Bo", "Cy", "Di"):
        reply = engine.submit(system + f"\nUser: Hi, I am {name}.\nAssistant:", GREEDY).result(60)
        # Copied from the slot that holds it; that conversation keeps its own cache.
        assert reply.usage.cached_tokens >= len(engine.tokenize(system)) - 2
    again = engine.submit(system + "\nUser: Hi, I am Ann.\nAssistant:" + first.text, GREEDY).result(60)
    assert again.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 4


async def test_deleting_a_thread_deletes_its_cache_files(tmp_path, monkeypatch, engines):
    from chainlit.user import User

    from llm.web.data_layer import HearthDataLayer

    monkeypatch.setenv("HEARTH_DATA_DIR", str(tmp_path))
    layer = HearthDataLayer(f"sqlite+aiosqlite:///{tmp_path / 'hearth.db'}")
    try:
        user = await layer.create_user(User(identifier="alice", metadata={}))
        threads = [str(uuid.uuid4()) for _ in range(2)]
        for thread in threads:
            await layer.update_thread(thread, name=thread, user_id=user.id)
        engine = new_engine("default", tmp_path)
        for thread in threads:
            engine.submit(long_text(50, thread), GREEDY, session=thread, user="alice").result(60)
        engine.close()  # written to disk; the thread is deleted while no engine is loaded
        assert len(list((tmp_path / "kv").glob("*.kv"))) == 2
        await layer.delete_thread(threads[0])
        assert len(list((tmp_path / "kv").glob("*.kv"))) == 1

        # And while one is loaded, holding the thread in a slot: every tier forgets it.
        engine = new_engine("default", tmp_path)
        engines.append(engine)
        monkeypatch.setitem(native.engine._registry, (tmp_path, "cpu"), engine)  # as load_engine keeps it
        text = long_text(50, threads[1]) + " more"
        engine.submit(text, GREEDY, session=threads[1], user="alice").result(60)
        await layer.delete_thread(threads[1])
        assert list((tmp_path / "kv").glob("*.kv")) == []
        assert engine.submit(text, GREEDY, user="alice").result(60).usage.cached_tokens < 10
    finally:
        await layer.close()
