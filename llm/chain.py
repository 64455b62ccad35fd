"""A Chainlit session's chain, and streaming its reply token by token.

`build_chain` wraps the SAME engine in a new LLMChain: it loads nothing and costs microseconds, so a
settings change can rebuild the chain every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from langchain_classic.chains import LLMChain
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from llm._base import completion_info
from llm.chat_models import ChatHearth, Submitted, observe_submissions
from llm.settings import GenerationSettings
from native import Completion, Engine, Stream, Timings, Usage

# `history` is required, not optional: LLMChain passes on only the prompt's input_variables, and an
# optional placeholder is not one of them, so its messages would be silently dropped.
PROMPT = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{question}")])


def build_chain(
    engine: Engine,
    settings: GenerationSettings | None = None,
    session_id: str | None = None,
    chat_template: str | None = None,
    user: str | None = None,
) -> LLMChain:
    """An LLMChain (conversation history + question -> ChatHearth) around an already loaded engine.
    `chat_template` overrides the template chosen from the model (a built-in name); `user`: whose
    conversation it is (cached prefixes are shared among one user's conversations only)."""
    settings = settings or GenerationSettings()
    # A person reads each reply before typing: time enough to compute the next turn's separator.
    chat = ChatHearth(
        engine=engine,
        session_id=session_id,
        user=user,
        chat_template=chat_template,
        prefill_next_turn=True,
        **settings.model_dump(),
    )
    return LLMChain(prompt=PROMPT, llm=chat, verbose=False)


class _TokenPipe(AsyncCallbackHandler):
    def __init__(self, pipe: Stream) -> None:
        self.pipe = pipe

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.pipe.push(token)


# The pipe's end only ends the iteration: the chain's result, error and metadata come from its task.
_PIPE_END = Completion("", "stop", Usage(0, 0, 0), Timings(0.0, 0.0, 0.0))


class StreamedReply:
    """Run a chain and iterate its tokens as they come; `result` holds the chain's output afterwards.

    Cancelling the consumer (Chainlit's stop button cancels the message task) cancels the chain,
    which cancels the generation in the engine.
    """

    def __init__(self, chain: LLMChain, inputs: dict[str, Any], callbacks: list | None = None) -> None:
        self.chain, self.inputs, self.callbacks = chain, inputs, callbacks or []
        self.result: dict[str, Any] | None = None
        self.metadata: dict[str, Any] = {}
        """model_name, finish_reason, token counts and timings of the generation, once it has ended."""
        self.submitted: Submitted | None = None
        """What went to the engine (exact prompt, stop strings, the Stream), once it accepted it."""

    def _submitted(self, submitted: Submitted) -> None:
        self.submitted = submitted

    async def cancelled(self, wait: float = 10.0) -> dict[str, Any]:
        """After the consumer was cancelled (the stop button): stop the generation, wait for the engine
        to confirm, and fill `metadata` from its Completion (finish_reason `cancelled`). LangChain
        reports a cancellation as an error without a result, so the Stream is asked directly."""
        if self.submitted is None:
            return self.metadata
        stream = self.submitted.stream
        stream.cancel()
        try:
            completion = await asyncio.to_thread(stream.result, wait)
        except TimeoutError:
            return self.metadata
        self.metadata = completion_info(completion, self.submitted.model_name)
        return self.metadata

    def chunks(self, interval: float = 0.03) -> AsyncIterator[str]:
        """The reply's text in pieces, at most one per `interval` seconds after the first (see
        `Stream.ajoined`): a browser gains nothing from a socket message per token, and pays for each."""
        return self._pieces(interval)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces(None)

    async def _pieces(self, interval: float | None) -> AsyncIterator[str]:
        """The chain's tokens, one by one (`interval` None) or joined as `Stream.ajoined` joins an
        engine's deltas: the chain's callbacks feed a Stream of their own."""
        pipe = Stream()
        config = {"callbacks": [_TokenPipe(pipe), _Metadata(self), *self.callbacks]}
        with observe_submissions(self._submitted):  # the chain's task copies this context
            task = asyncio.ensure_future(self.chain.ainvoke(self.inputs, config=config))
        task.add_done_callback(lambda _: pipe.finish(_PIPE_END))
        pieces = aiter(pipe) if interval is None else pipe.ajoined(interval)
        try:
            async for piece in pieces:
                yield piece
            self.result = await task
        finally:
            await pieces.aclose()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


class _Metadata(AsyncCallbackHandler):
    def __init__(self, reply: StreamedReply) -> None:
        self.reply = reply

    async def on_llm_end(self, response, **kwargs: Any) -> None:
        generation = response.generations[0][0] if response.generations and response.generations[0] else None
        self.reply.metadata = (generation.generation_info or {}) if generation else {}
