"""One chat session: its chain, its history, and the engine it shares with every other session."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from llm._base import model_template
from llm.chain import StreamedReply, build_chain
from llm.settings import GenerationSettings
from native import Engine


class ChatSession:
    """A chat's history and its chain. Changing settings rebuilds the chain around the same engine;
    switching the model rebuilds it around another engine and keeps the history."""

    def __init__(
        self,
        engine: Engine,
        settings: GenerationSettings | None = None,
        session_id: str | None = None,
        model: str | None = None,
        user: str | None = None,
    ) -> None:
        self.engine = engine
        self.model = model
        """The spec the engine was loaded from (what the model picker shows)."""
        self.session_id = session_id
        """The engine's session: the chat thread, whose KV cache outlives a restart (disk tier)."""
        self.user = user
        self.chat_template: str | None = None
        """A built-in template chosen over the model's own, or None (automatic)."""
        self.show_prompt = False
        """Show each reply's exact prompt and stop strings."""
        self.history: list[BaseMessage] = []
        self.starts_at: str | None = None
        """Id of the message the model's memory starts at (after "start over" or "trim"), or None."""
        self.apply(settings or GenerationSettings())

    def apply(self, settings: GenerationSettings, chat_template: str | None = None) -> None:
        """Use new settings (and template override) from the next message on. Loads nothing."""
        self.settings = settings
        self.chat_template = chat_template
        self.chain = build_chain(self.engine, settings, self.session_id, chat_template, self.user)

    def switch(self, engine: Engine, model: str) -> None:
        """Answer with another engine from the next message on, over the same history."""
        self.engine, self.model = engine, model
        self.apply(self.settings, self.chat_template)

    def auto_template(self) -> str:
        """The name of the template the model gets without an override ("gguf": its own)."""
        if self.engine.renders_chat:
            return "the server's"
        return model_template(self.engine.info).name

    def reply(
        self, question: str, history: list[BaseMessage] | None = None, callbacks: list | None = None
    ) -> StreamedReply:
        """Start answering `question` after `history` (default: the exchanges remembered so far);
        iterate the result for its text."""
        if history is not None:
            self.history = list(history)
        inputs: dict[str, Any] = {"question": question, "history": list(self.history)}
        return StreamedReply(self.chain, inputs, callbacks)

    def remember(self, question: str, answer: str) -> None:
        """Add a finished (or stopped) exchange to the history."""
        self.history += [HumanMessage(question), AIMessage(answer)]
