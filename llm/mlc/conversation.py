"""A ChatModule's conversation: which template it uses, what it remembers, and the tokens each turn sends.

The template is the model's own (as ChatHearth picks it), a named one, a separator-style template built
from `ConvConfig` fields (MLC's own format, written out as a Jinja template so `prompts` renders it like
any other), or none at all: the raw-text `LM` mode sends the prompt as it is and remembers nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import prompts
from llm._base import model_template
from llm.mlc.config import ChatConfig, ConvConfig
from llm.nano.templates import stop_strings
from native import Engine

LM = "LM"
"""The raw-text template: no roles, no system prompt, no memory between calls."""

_STRUCTURE = ("roles", "seps", "role_msg_sep", "role_empty_sep")


class Conversation:
    """The messages so far and how they become tokens. Chat mode keeps every exchange; LM mode none."""

    def __init__(self, engine: Engine, config: ChatConfig) -> None:
        self.engine = engine
        self.conv = config.conv_config or ConvConfig()
        self.raw = config.conv_template == LM or self.conv.separator_style == 1
        self.template = None if self.raw else _chat_template(engine, config.conv_template, self.conv)
        self.history: list[dict[str, str]] = []
        self.stop = self._stop_strings()

    # -- what the model sees ------------------------------------------------------------------------

    def messages_for(self, prompt: str | Sequence[Any]) -> list[dict[str, str]]:
        """The conversation after this prompt: the history plus a user turn, or the given messages
        (a list of chat messages replaces the history)."""
        if isinstance(prompt, str):
            return [*self.history, {"role": "user", "content": prompt}]
        if not prompt:
            raise ValueError("prompt is an empty list of messages: give a string or at least one message")
        return [_as_message(m, i) for i, m in enumerate(prompt)]

    def tokens(self, prompt: str | Sequence[Any]) -> tuple[list[int], list[dict[str, str]]]:
        """The tokens to submit for `prompt`, and the messages they stand for (empty in LM mode)."""
        if self.raw:
            if not isinstance(prompt, str):
                raise ValueError("the LM template generates from raw text: give the prompt as a string")
            return self.encode(prompt), []
        messages = self.messages_for(prompt)
        return self.encode(self.render(messages)), messages

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text of `messages`: system prompt and opening exchanges first, as configured."""
        assert self.template is not None
        opening = [{"role": "system", "content": self.conv.system}] if self.conv.system is not None else []
        opening += self._opening_messages()
        return prompts.render([*opening, *messages], self.template).text

    def remember(self, messages: list[dict[str, str]], reply: str) -> None:
        """Keep an exchange (chat mode only: LM mode has no memory)."""
        if not self.raw:
            self.history = [*messages, {"role": "assistant", "content": reply}]

    def reset(self) -> None:
        self.history = []

    # -- details ------------------------------------------------------------------------------------

    def _opening_messages(self) -> list[dict[str, str]]:
        messages = self.conv.messages or []
        roles = dict(zip(self.conv.roles or (), ("user", "assistant"), strict=False))
        offset = len(messages) if self.conv.offset is None else self.conv.offset
        return [{"role": roles.get(role, role), "content": text} for role, text in messages[:offset]]

    def encode(self, text: str) -> list[int]:
        add_bos = self.conv.add_bos
        if add_bos is None:  # as the model's own metadata says
            tokens = self.engine.tokenize(text)
        else:
            tokens = self.engine.tokenize(text, add_special=False)
            if add_bos:
                tokens = [self._bos_id(), *tokens]
        return [*(self.conv.prefix_tokens or ()), *tokens]

    def _bos_id(self) -> int:
        bos = self.engine.info.bos_token
        ids = self.engine.tokenize(bos, add_special=False) if bos else []
        if len(ids) != 1:
            raise ValueError(f"{self.engine.model_name} has no BOS token: leave ConvConfig.add_bos unset")
        return ids[0]

    def _stop_strings(self) -> tuple[str, ...]:
        stops: list[str | int] = list(self.template.stop) if self.template else []
        stops += [self.conv.stop_str] if self.conv.stop_str else []
        return stop_strings(self.engine, [*stops, *(self.conv.stop_tokens or ())])


def _chat_template(engine: Engine, name: str | None, conv: ConvConfig) -> prompts.ChatTemplate:
    """The model's template or the named one, unless ConvConfig describes a separator template."""
    given = [field for field in _STRUCTURE if getattr(conv, field) is not None]
    if given:
        if conv.roles is None or conv.seps is None:
            raise ValueError(
                f"ConvConfig sets {given} but not both roles and seps: a separator template needs "
                "roles=[user, assistant] and seps (role_msg_sep defaults to ': ', role_empty_sep to ':')"
            )
        return separator_template(conv)
    try:
        return model_template(engine.info, name)
    except prompts.UnknownTemplate as exc:
        raise prompts.UnknownTemplate(f"{exc} (or {LM} for raw text generation)") from None


def separator_template(conv: ConvConfig) -> prompts.ChatTemplate:
    """MLC's separator-style conversation written as a Jinja template (values quoted as JSON strings,
    which Jinja reads as string literals)."""
    assert conv.roles is not None and conv.seps is not None

    def q(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    user, assistant = (q(r) for r in conv.roles)
    msg_sep = q(conv.role_msg_sep if conv.role_msg_sep is not None else ": ")
    empty_sep = q(conv.role_empty_sep if conv.role_empty_sep is not None else ":")
    source = "".join(
        [
            "{% set seps = [" + ", ".join(q(s) for s in conv.seps) + "] %}",
            "{% if messages and messages[0]['role'] == 'system' %}",
            "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}",
            "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}",
            "{% if system is not none %}{{ system + seps[0] }}{% endif %}",
            "{% for message in turns %}",
            "{% if message['role'] == 'user' %}{{ " + user + " }}",
            "{% elif message['role'] == 'assistant' %}{{ " + assistant + " }}",
            "{% else %}{{ raise_exception('this separator template has no ' + message['role'] + ' role') }}",
            "{% endif %}",
            "{{ " + msg_sep + " + message['content'] + seps[loop.index0 % (seps | length)] }}",
            "{% endfor %}",
            "{% if add_generation_prompt %}{{ " + assistant + " + " + empty_sep + " }}{% endif %}",
        ]
    )
    return prompts.ChatTemplate(name=conv.name or "separator", source=source)


def _as_message(message: Any, index: int) -> dict[str, str]:
    """A chat message as {"role", "content"}: from a mapping, a (role, content) pair, or an object with
    `role` and `content` attributes (MLC's ChatMessage, LangChain's messages)."""
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, tuple | list) and len(message) == 2:
        role, content = message
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if not isinstance(role, str) or not isinstance(content, str):
        raise ValueError(f"message {index} needs a string role and a string content, got {message!r}")
    return {"role": role, "content": content}
