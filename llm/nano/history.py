"""`ChatHistory`: NanoLLM's multi-turn chat, rendered with the model's chat template.

    chat_history = ChatHistory(model, system_prompt="You are a helpful and friendly AI assistant.")
    chat_history.append(role="user", msg=prompt)
    embedding, position = chat_history.embed_chat()
    reply = model.generate(embedding, kv_cache=chat_history.kv_cache, stop_tokens=chat_history.template.stop)
    ...
    chat_history.append(role="bot", text=reply.text)
    chat_history.kv_cache = reply.kv_cache

The KV cache lives in the engine, in the slot of the history's session. `embed_chat` renders the whole
chat, finds how much of it the cache already holds, and returns only the rest; so turn N computes only
its new tokens. Editing or removing a message simply makes the cache match a shorter prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import prompts
from llm._base import model_template
from llm.nano.model import NanoLLM
from llm.nano.stream import KVCache, StreamingResponse
from native.slots import common_prefix


@dataclass
class ChatMessage:
    """One message; change `text` to edit the chat (the cache follows on the next `embed_chat`)."""

    role: str
    text: str = ""

    @property
    def content(self) -> str:
        return self.text


class ChatHistory:
    """The messages of one chat, its template and its KV cache."""

    def __init__(
        self,
        model: NanoLLM,
        chat_template: str | prompts.ChatTemplate | None = None,
        system_prompt: str | None = None,
        *,
        prefill_next_turn: bool = False,
    ) -> None:
        """`chat_template` is a built-in name, a JSON file or a ChatTemplate; by default the model's
        own. `system_prompt` opens every chat; without it, the template's default applies (if any).
        With `prefill_next_turn` (Hearth's own), the engine computes the template's turn separator
        into the cache while the chat sits idle after a reply, so the next message prefills fewer
        tokens (`KVCache.followed_by`); the terminal chat turns it on."""
        self.model = model
        self.prefill_next_turn = prefill_next_turn
        if isinstance(chat_template, prompts.ChatTemplate):
            self.template = chat_template
        elif chat_template is None or isinstance(chat_template, str):
            self.template = model_template(model.engine.info, chat_template)
        else:
            raise TypeError(
                f"chat_template is a name, a JSON file path or a ChatTemplate, not {chat_template!r}"
            )
        self._system_prompt = system_prompt
        self.messages: list[ChatMessage] = []
        self.kv_cache: KVCache | None = None
        """The engine state after the last reply; give it to `generate` and set it from `reply.kv_cache`."""
        self.reset()

    # -- the list of messages -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index: int) -> ChatMessage:
        return self.messages[index]

    def __iter__(self) -> Iterator[ChatMessage]:
        return iter(self.messages)

    def __delitem__(self, index: int | slice) -> None:
        del self.messages[index]

    def append(
        self,
        role: str = "user",
        msg: str | ChatMessage | StreamingResponse | None = None,
        text: str | None = None,
    ) -> ChatMessage:
        """Add a message and return it. `msg` (or `text`) is its text; a StreamingResponse adds the
        reply's text and takes its KV cache."""
        if isinstance(msg, ChatMessage):
            message = msg
        elif isinstance(msg, StreamingResponse):
            message = ChatMessage(role, msg.text)
            self.kv_cache = msg.kv_cache
        else:
            body = msg if msg is not None else text if text is not None else ""
            if not isinstance(body, str):
                raise TypeError(f"a message's text is a string, got {type(body).__name__}")
            message = ChatMessage(role, body)
        self.messages.append(message)
        return message

    def remove(self, start: int, stop: int | None = None) -> None:
        """Remove messages `start` (inclusive) to `stop` (exclusive; default: just `start`)."""
        n = len(self.messages)
        if start < 0:
            start += n
        if stop is None:
            stop = start + 1
        elif stop <= 0:  # counted from the end, as in NanoLLM: remove(-2, 0) removes the last two
            stop += n
        if not 0 <= start < stop <= n:
            raise IndexError(f"cannot remove messages {start}..{stop}: the chat has {n}")
        del self.messages[start:stop]

    def pop(self, count: int = 1) -> None:
        """Remove the last `count` messages."""
        if not 0 < count <= len(self.messages):
            raise IndexError(f"cannot pop {count} messages: the chat has {len(self.messages)}")
        del self.messages[-count:]

    def reset(self, add_system_prompt: bool = True) -> None:
        """Start over: no messages but the system prompt, and no KV cache."""
        self.messages = []
        self.kv_cache = None
        if add_system_prompt and self._system_prompt is not None:
            self.append("system", self._system_prompt)

    @property
    def system_prompt(self) -> str | None:
        return self._system_prompt if self._system_prompt is not None else self.template.system_prompt

    @system_prompt.setter
    def system_prompt(self, instruction: str | None) -> None:
        """A new system prompt starts a new chat."""
        if instruction != self._system_prompt:
            self._system_prompt = instruction
            self.reset()

    def to_list(self) -> list[dict[str, Any]]:
        return [{"role": m.role, "content": m.text} for m in self.messages]

    # -- the model's view ---------------------------------------------------------------------------

    @property
    def prompt(self) -> prompts.Prompt:
        """The whole chat as prompt text, ending where the bot's reply begins (after a user message)."""
        reply_next = not self.messages or self.messages[-1].role not in ("bot", "assistant")
        return prompts.render(self.to_list(), self.template, add_generation_prompt=reply_next)

    def embed_chat(self, use_cache: bool = True) -> tuple[list[int], int]:
        """(tokens to compute, position): the chat's tokens after the `position` tokens the KV cache
        already holds. Pass both the tokens and `kv_cache` to `generate`. With `use_cache=False`,
        every token (and the cache is dropped)."""
        tokens = self.model.engine.tokenize(self.prompt.text)
        if not use_cache or self.kv_cache is None:
            self.kv_cache = None
            if self.prefill_next_turn:  # a fresh session that knows what follows its replies
                follow = prompts.turn_separator(self.template)
                self.kv_cache = KVCache(f"nano-{uuid.uuid4().hex}", followed_by=follow)
            return tokens, 0
        position = common_prefix(self.kv_cache.tokens, tokens)
        self.kv_cache.truncate(position)  # what follows no longer matches the chat: forget it
        return tokens[position:], position

    @property
    def num_tokens(self) -> int:
        """Tokens of the whole chat as the model sees it."""
        return len(self.model.engine.tokenize(self.prompt.text))

