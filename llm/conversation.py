"""One chat session: its chain, its history, and the engine it shares with every other session."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from llm._base import configured_engine
from llm.chain import Reply, build_chain
from llm.settings import GenerationSettings
from native import Engine


def shared_engine() -> Engine:
    """The process-wide engine for the configured model (`HEARTH_MODEL`, else the default).
    Loads the model on the first call only; later calls return the same engine."""
    return configured_engine()


class Conversation:
    """A chat's history and its chain. Changing settings rebuilds the chain around the same engine."""

    def __init__(
        self, engine: Engine, settings: GenerationSettings | None = None, session_id: str | None = None
    ) -> None:
        self.engine = engine
        self.session_id = session_id
        self.history: list[BaseMessage] = []
        self.apply(settings or GenerationSettings())

    def apply(self, settings: GenerationSettings) -> None:
        """Use new settings from the next message on. Loads nothing."""
        self.settings = settings
        self.chain = build_chain(self.engine, settings, session_id=self.session_id)

    def reply(
        self, question: str, history: list[BaseMessage] | None = None, callbacks: list | None = None
    ) -> Reply:
        """Start answering `question` after `history` (default: the exchanges remembered so far);
        iterate the result for its text."""
        if history is not None:
            self.history = list(history)
        inputs: dict[str, Any] = {"question": question, "history": list(self.history)}
        return Reply(self.chain, inputs, callbacks)

    def remember(self, question: str, answer: str) -> None:
        """Add a finished (or stopped) exchange to the history."""
        self.history += [HumanMessage(question), AIMessage(answer)]
