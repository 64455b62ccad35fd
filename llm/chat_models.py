"""`ChatHearth`: a LangChain chat model over the local engine, applying the model's chat template."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field, PrivateAttr

import prompts
from llm._base import HearthFields, completion_info, model_template
from llm.settings import GenerationSettings
from llm.tools import langchain as tool_calls
from native import Stream

log = logging.getLogger("hearth.llm")

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "chat": "user"}


def role_of(message: BaseMessage) -> str:
    """The chat-template role of a LangChain message ("human" -> "user", "ai" -> "assistant")."""
    return _ROLES.get(message.type, message.type)


@dataclass(frozen=True)
class Submitted:
    """What `ChatHearth` handed the engine for one reply.

    `observe_submissions` hands it to a caller, so it can show the exact prompt and still reach the
    Stream (hence the Completion) of a cancelled reply: LangChain reports a cancellation through
    `on_llm_error`, without a result, and custom callback events need a parent run that a chat model
    called by LangChain itself does not have.
    """

    stream: Stream
    model_name: str
    prompt: str | None
    """The exact prompt text; None when a remote server renders the chat itself."""
    stop: tuple[str, ...]
    """Every stop string the engine watches for (the template's and the caller's)."""
    dropped: int = 0
    """How many of the oldest messages were left out so that the prompt fits the context."""


_observer: contextvars.ContextVar[Callable[[Submitted], None] | None] = contextvars.ContextVar(
    "hearth_submission_observer", default=None
)


@contextlib.contextmanager
def observe_submissions(observer: Callable[[Submitted], None]) -> Iterator[None]:
    """Within this block (and the tasks and threads LangChain starts from it, which copy the context),
    every reply `ChatHearth` starts is passed to `observer` once the engine has accepted it."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def _announce(submitted: Submitted) -> Submitted:
    if (observer := _observer.get()) is not None:
        observer(submitted)
    return submitted


class ChatHearth(BaseChatModel, HearthFields):
    """Chat with a local GGUF model: messages are rendered with the model's chat template.

    ```python
    from llm import ChatHearth
    chat = ChatHearth(model="default", temperature=0.0, max_new_tokens=32)
    chat.invoke([("system", "Be brief."), ("human", "Hello!")])
    ```
    The template is the model's own (from its GGUF metadata) unless `chat_template` names another.
    Instances naming the same model share one engine; give each conversation its own `session_id`
    so that its KV cache is reused turn after turn.
    """

    chat_template: str | None = Field(None, description="A built-in template name or a JSON file path.")
    prefill_next_turn: bool = Field(
        False,
        description="While the session is idle after a reply, compute the template's turn separator "
        "into its cache: the next message's time to first token is shorter. Needs `session_id`.",
    )

    _template: prompts.ChatTemplate | None = PrivateAttr(None)

    # What `bind_tools` binds: passed to every call, consumed by `_start`.
    CALL_KEYWORDS: ClassVar[frozenset[str]] = frozenset({"tools", "tool_choice"})

    @property
    def _llm_type(self) -> str:
        return "chat-hearth"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "chat_template": self.chat_template,
            **self._settings(None, {}).model_dump(),
        }

    def template(self) -> prompts.ChatTemplate:
        """The chat template this model's conversations are rendered with (chosen once per instance)."""
        if self._template is not None:
            return self._template
        self._template = model_template(self.get_engine().info, self.chat_template)
        return self._template

    def turns(self, messages: list[BaseMessage], system_prompt: str | None = None) -> list[dict[str, str]]:
        """The conversation as {"role", "content"} dicts, the system prompt first when one is set."""
        turns = [{"role": role_of(m), "content": m.text} for m in messages]
        if system_prompt and not any(t["role"] == "system" for t in turns):
            turns.insert(0, {"role": "system", "content": system_prompt})
        return turns

    def render(self, messages: list[BaseMessage], system_prompt: str | None = None) -> prompts.Prompt:
        """The exact prompt text and stop strings the engine receives for these messages."""
        return prompts.render(self.turns(messages, system_prompt), self.template())

    def fit(self, messages: list[BaseMessage], settings: GenerationSettings) -> prompts.Prompt:
        """The prompt for `messages`, trimmed to fit the context with room for the reply.

        Policy for long chats: keep the system prompt and the latest turns; drop the oldest turns,
        whole, until the prompt plus `max_new_tokens` fits. If even the last message alone does not
        fit, the prompt goes to the engine as is and is refused there with ContextOverflow.
        """
        return self._fit(messages, settings)[0]

    def _fit(self, messages: list[BaseMessage], settings: GenerationSettings) -> tuple[prompts.Prompt, int]:
        """`fit`, also saying how many messages were dropped.

        The leading system messages stay; the rest is cut where a user turn begins (a conversation
        resumes on one), or before the last message when nothing shorter fits. Fewer messages make a
        shorter prompt, so the first cut that fits is found by bisection: a 10,000-token chat is
        rendered and tokenized a handful of times, not once per dropped message."""
        engine = self.get_engine()
        room = engine.n_ctx - min(settings.max_new_tokens, engine.n_ctx // 2)
        first = next((i for i, m in enumerate(messages) if m.type != "system"), None)
        if first is None:
            return self.render(list(messages), settings.system_prompt), 0
        last = len(messages) - 1
        cuts = [first, *(i for i in range(first + 1, last) if messages[i].type == "human"), last]
        cuts = sorted(set(cuts))

        def render(cut: int) -> prompts.Prompt:
            return self.render([*messages[:first], *messages[cut:]], settings.system_prompt)

        prompt = render(first)
        if len(engine.tokenize(prompt.text)) > room:
            low, high = 1, len(cuts) - 1  # cuts[high] is kept when nothing fits: the last message
            while low < high:
                middle = (low + high) // 2
                if len(engine.tokenize(render(cuts[middle]).text)) <= room:
                    high = middle
                else:
                    low = middle + 1
            prompt = render(cuts[high])
            dropped = cuts[high] - first
            log.info("dropped the %d oldest messages to fit the context", dropped)
            return prompt, dropped
        return prompt, 0

    def _start(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict) -> Submitted:
        settings = self._settings(stop, kwargs)
        if kwargs.get("tools"):
            stream = self._start_tools(messages, stop, kwargs)
            return Submitted(stream, self.model_name, None, tuple(settings.stop))  # type: ignore[arg-type]
        if self.get_engine().renders_chat:
            # A remote server applies its model's template (and refuses what does not fit): send the
            # messages themselves.
            stream = self._submit(self.turns(messages, settings.system_prompt), settings)
            return Submitted(stream, self.model_name, None, tuple(settings.stop))
        prompt, dropped = self._fit(messages, settings)
        follow = prompts.turn_separator(self.template()) if self.prefill_next_turn else None
        stream = self._submit(prompt.text, settings, prompt.stop, followed_by=follow)
        stop = settings.sampling(prompt.stop).stop
        return Submitted(stream, self.model_name, prompt.text, stop, dropped)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """A runnable whose replies may be calls of `tools` (LangChain tools, pydantic models, functions
        or OpenAI tool dicts), returned in `AIMessage.tool_calls`. A llama.cpp grammar makes every call
        valid JSON for one of the tools' schemas. `tool_choice`: see `llm.tools.langchain`."""
        formatted = tool_calls.format_tools(tools)
        choice = tool_calls.resolve_choice(tool_choice, formatted)  # a bad choice fails here, not later
        return super().bind(tools=formatted, tool_choice=choice, **kwargs)

    def _start_tools(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict
    ) -> Stream | tool_calls.ToolCallStream:
        """`_start` with tools bound: the tools described in the system message, tool calls and
        results of the history as plain turns, and a call's JSON constrained by a grammar."""
        if self.get_engine().renders_chat:
            raise ValueError("tool calling needs a local model: a remote engine renders its own chat")
        settings = self._settings(stop, kwargs)
        tools = kwargs["tools"]
        choice = tool_calls.resolve_choice(kwargs.get("tool_choice"), tools)
        turn = tool_calls.tool_turn(messages, tools, choice, settings.system_prompt)
        prompt = self.fit(turn.messages, settings)
        if turn.grammar is None:
            return self._submit(prompt.text, settings, prompt.stop)
        constrained = tool_calls.ConstrainedSettings(**settings.model_dump(), grammar=turn.grammar)
        return tool_calls.ToolCallStream(self._submit(prompt.text, constrained, prompt.stop))

    def _chunk(self, delta: str) -> ChatGenerationChunk:
        return ChatGenerationChunk(message=AIMessageChunk(content=delta))

    def _final_chunk(self, stream: Stream) -> ChatGenerationChunk:
        info = completion_info(stream.completion, self.model_name)
        usage = stream.completion.usage if stream.completion else None
        message = AIMessageChunk(
            content="",
            response_metadata=info,
            usage_metadata=UsageMetadata(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                input_token_details={"cache_read": usage.cached_tokens},
            )
            if usage
            else None,
            chunk_position="last",
            tool_call_chunks=stream.tool_call_chunks()
            if isinstance(stream, tool_calls.ToolCallStream)
            else [],
        )
        return ChatGenerationChunk(message=message, generation_info=info)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        submitted = _announce(self._start(messages, stop, kwargs))
        yield from self._chunks(submitted.stream, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # Rendering, fitting and tokenizing a long chat, a busy engine's back-off and a remote
        # engine's round trip take a while: off the loop that every other chat shares.
        submitted = _announce(await asyncio.to_thread(self._start, messages, stop, kwargs))
        async for chunk in self._achunks(submitted.stream, run_manager):
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
