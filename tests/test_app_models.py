"""The app's model picker, engine pool (idle unloading), panel parsing, stats of stopped replies.

Real models throughout: the pool's integration test loads a hard link of the default model, so that
closing it never touches the session-wide `engine` fixture.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import pytest
from support.wait import wait_until

from llm.chain import StreamedReply, build_chain
from llm.settings import EngineConfig, GenerationSettings
from llm.web.chat_session import ChatSession
from llm.web.engine_pool import EnginePool
from llm.web.model_choices import model_choices, remote_models
from llm.web.reply_stats import context_is_full, format_stats, quiet_line, stats_details
from llm.web.ui import choices_from_panel, panel_widgets
from native import load_engine, loaded_engines, model_loads
from native.resolve import resolve_model


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTH_MODELS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def own_copy(models_dir):
    """The default model under another path (a hard link when possible): an engine of its own."""
    target = models_dir / "own-copy.gguf"
    try:
        os.link(resolve_model("default"), target)
    except OSError:
        shutil.copy(resolve_model("default"), target)
    return "own-copy"


def test_picker_lists_offline_catalog_models_folder_models_and_remote_servers(own_copy, monkeypatch):
    monkeypatch.setenv("HEARTH_REMOTE_MODELS", "big=http://gpu-box:8000/v1, http://other:9000/v1#m")
    choices = {c.spec: c.label for c in model_choices()}
    assert list(choices)[0] == "default"  # the configured model comes first
    assert "gemma-3-270m" in choices  # its package is installed: assembled on first use, offline
    assert "assembled on first use" in choices["gemma-3-270m"]
    assert choices["own-copy"].startswith("own-copy (models/")
    assert choices["http://gpu-box:8000/v1"] == "big (remote)"
    assert "http://other:9000/v1#m" in choices


def test_a_configured_model_outside_the_list_is_offered_first(models_dir, monkeypatch):
    monkeypatch.setenv("HEARTH_MODEL", "/somewhere/else.gguf")
    assert model_choices()[0].spec == "/somewhere/else.gguf"


def test_a_bad_remote_entry_is_refused_with_its_text():
    with pytest.raises(ValueError, match="not-a-url"):
        remote_models(EngineConfig(remote_models="x=not-a-url"))


def test_panel_template_auto_and_override():
    assert choices_from_panel({"chat_template": "auto"}).chat_template is None
    assert choices_from_panel({"chat_template": "llama-2", "show_prompt": True}).chat_template == "llama-2"
    with pytest.raises(ValueError, match="unknown chat template"):
        choices_from_panel({"chat_template": "nope"})


def test_panel_shows_the_automatic_template_and_the_model_picker(engine):
    conversation = ChatSession(engine, model="default")
    assert conversation.auto_template() == "gguf"
    widgets = {
        w.id: w for w in panel_widgets(GenerationSettings(), model_choices(), "default", "gemma", None, False)
    }
    assert widgets["chat_template"].initial == "auto"
    assert "auto (gemma)" in widgets["chat_template"].items
    assert widgets["model"].initial == "default"
    assert widgets["show_prompt"].initial is False


def test_stats_name_the_model_and_a_full_context_is_noticed():
    metadata = {
        "model_name": "gemma-3-270m",
        "finish_reason": "cancelled",
        "prompt_tokens": 30,
        "cached_tokens": 20,
        "completion_tokens": 5,
        "time_to_first_token": 0.1,
        "decode_tokens_per_s": 50.0,
    }
    line = format_stats(metadata, 100)
    assert line.startswith("gemma-3-270m · 30 prompt tokens (20 cached)")
    assert line.endswith("stopped by you")
    assert not context_is_full(metadata, 100)
    assert context_is_full({**metadata, "completion_tokens": 60}, 100)


def test_the_quiet_line_says_speed_first_token_and_cache_and_the_details_say_everything():
    metadata = {
        "model_name": "default",
        "finish_reason": "length",
        "prompt_tokens": 192,
        "cached_tokens": 178,
        "cached_from": "disk",
        "completion_tokens": 64,
        "time_to_first_token": 0.161,
        "decode_tokens_per_s": 41.7,
    }
    assert quiet_line(metadata) == "42 tok/s · 0.16 s to first token · 178 of 192 cached"
    assert stats_details(metadata, 4096) == [
        "default",
        "192 prompt tokens (178 cached from disk)",
        "64 generated",
        "first token 0.16 s",
        "41.7 tok/s",
        "context 256/4096",
        "stopped at the Max New Tokens limit",
    ]
    assert " · ".join(stats_details(metadata, 4096)) == format_stats(metadata, 4096)
    assert quiet_line({}) == "" and stats_details({}, 4096) == []


def test_a_stopped_reply_gets_its_completion_with_finish_cancelled(engine):
    chain = build_chain(engine, GenerationSettings(temperature=0.0, max_new_tokens=512), session_id="stop")
    reply = StreamedReply(chain, {"question": "Write a long story about a dragon.", "history": []})

    async def stop_after_five_tokens() -> dict:
        five = asyncio.Event()

        async def consume() -> None:
            count = 0
            async for _ in reply:
                count += 1
                if count == 5:
                    five.set()

        task = asyncio.ensure_future(consume())
        await five.wait()
        task.cancel()  # what Chainlit's stop button does to the message's task
        await asyncio.gather(task, return_exceptions=True)
        return await reply.cancelled()

    metadata = asyncio.run(stop_after_five_tokens())
    assert metadata["finish_reason"] == "cancelled"
    assert 5 <= metadata["completion_tokens"] < 512
    assert metadata["model_name"] == engine.model_name
    assert "Write a long story about a dragon." in reply.submitted.prompt
    assert "<|im_end|>" in reply.submitted.stop


def test_a_switched_conversation_answers_from_the_new_engine(engine, own_copy):
    other = load_engine(own_copy)
    try:
        conversation = ChatSession(
            engine, GenerationSettings(temperature=0.0, max_new_tokens=4), model="default"
        )
        conversation.switch(other, own_copy)
        assert conversation.chain.llm.get_engine() is other
        assert conversation.settings.max_new_tokens == 4  # settings survive the switch
    finally:
        other.close()


class _FakeEngine:
    """Just enough of an engine for the pool's bookkeeping."""

    def __init__(self, name: str) -> None:
        self.model_name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def test_pool_counts_users_per_engine_and_unloads_only_idle_ones():
    engines: dict[str | None, _FakeEngine] = {}

    def loader(spec):
        if spec not in engines or engines[spec].closed:
            engines[spec] = _FakeEngine(spec)
        return engines[spec]

    pool = EnginePool(unload_after=0.05, loader=loader)
    a = pool.acquire("a", "s1")
    assert pool.acquire("a", "s2") is a
    b = pool.acquire("b", "s1")  # s1 switches: a keeps its other user
    time.sleep(0.2)  # four idle timeouts: the behaviour under test is that a held engine outlives them
    assert not a.closed and not b.closed
    pool.release("s2")  # a's last user
    wait_until(lambda: a.closed, what="a unloaded")
    assert not b.closed  # s1 still holds it
    pool.release("s1")
    wait_until(lambda: b.closed, what="b unloaded")
    assert pool.acquire("a", "s3") is not a  # loaded again on demand


def test_pool_keeps_engines_forever_when_unloading_is_off():
    pool = EnginePool(unload_after=0, loader=lambda spec: _FakeEngine(spec))
    engine = pool.acquire("a", "s1")
    pool.release("s1")
    time.sleep(0.1)  # time passing is the behaviour under test: nothing unloads it
    assert not engine.closed


def test_pool_unloads_a_real_idle_model_and_loads_it_again(own_copy):
    pool = EnginePool(unload_after=0.2, loader=lambda spec: load_engine(spec))
    loads = model_loads()
    engine = pool.acquire(own_copy, "s1")
    assert model_loads() == loads + 1 and engine in loaded_engines()
    assert engine.submit("Hello", None).result(60).usage.completion_tokens > 0
    pool.release("s1")
    wait_until(lambda: engine.closed, what="the idle engine unloaded")
    assert engine not in loaded_engines()
    again = pool.acquire(own_copy, "s2")
    try:
        assert again is not engine and model_loads() == loads + 2
    finally:
        pool.release("s2")
        again.close()
