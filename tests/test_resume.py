"""Resuming a chat thread (llm.web.resume): its history without notices, its saved settings and stats."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage

from llm.settings import GenerationSettings
from llm.web.resume import history_from_thread, notice_ids, restore_conversation, saved_stats


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
