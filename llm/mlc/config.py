"""MLC-Chat's three configuration objects, and how they layer.

A ChatModule's configuration is built like MLC's: the defaults, then `hearth-chat-config.json` beside
the model (Hearth's `mlc-chat-config.json`), then the `ChatConfig` given in code. Each layer overrides
only the fields it sets, and `conv_config` is merged field by field too. A `GenerationConfig` overrides
the result for one `generate` call. Sampling values are validated by `GenerationSettings`, the one
definition of their ranges.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm import keywords
from llm.settings import GenerationSettings

log = logging.getLogger("hearth.mlc")

CONFIG_FILE = "hearth-chat-config.json"

# MLC fields about compiling and sharding TVM models: a GGUF file and llama.cpp have no use for them.
# They are accepted (configs written for MLC keep loading) and named in a warning, never applied.
MLC_ONLY_FIELDS = frozenset(
    {
        "local_id",
        "mean_gen_len",
        "shift_fill_factor",
        "tokenizer_files",
        "model_category",
        "model_name",
        "tensor_parallel_shards",
        "use_presharded_weights",
        "sliding_window_size",
        "prefill_chunk_size",
        "attention_sink_size",
        "max_batch_size",
        "opt",
    }
)


class _Partial(BaseModel):
    """A partial configuration: every field is optional and None means "keep the value below"."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _suggest_fields(cls, data: Any) -> Any:
        """pydantic refuses an unknown field (extra="forbid") without naming the one meant: name it."""
        if isinstance(data, dict):
            meant = {k: keywords.closest(k, cls.model_fields) for k in data if k not in cls.model_fields}
            hints = [f"`{k}`: did you mean `{m}`?" for k, m in meant.items() if m]
            if hints:
                raise ValueError("; ".join(hints))
        return data

    def set_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self if v is not None}


class ConvConfig(_Partial):
    """Overrides of the conversation template, field by field (MLC's `ConvConfig`).

    `system`, `stop_str`, `stop_tokens`, `add_bos` and `prefix_tokens` apply to any template. `roles` and
    `seps` (with `role_msg_sep`, `role_empty_sep`) describe a whole separator-style template, MLC's own
    format: `system + seps[0]`, then `role + role_msg_sep + message + seps[i % len(seps)]` per message,
    then `roles[1] + role_empty_sep` for the reply. `separator_style=1` is the raw-text LM mode.
    """

    name: str | None = None
    system: str | None = Field(None, description="The system prompt, encoded before the chat.")
    roles: list[str] | None = Field(None, min_length=2, max_length=2, description="[user, assistant].")
    messages: list[tuple[str, str]] | None = Field(
        None, description="Opening exchanges, [[role, text], ...], with roles from `roles` or user/assistant."
    )
    offset: int | None = Field(None, ge=0, description="How many of `messages` open every chat.")
    separator_style: Literal[0, 1] | None = Field(None, description="0: chat, 1: raw text (LM).")
    seps: list[str] | None = Field(None, min_length=1, description="Separators after each message.")
    role_msg_sep: str | None = None
    role_empty_sep: str | None = None
    stop_str: str | None = Field(None, min_length=1, description="Generation stops at this text.")
    stop_tokens: list[int] | None = Field(None, description="Token ids that end generation.")
    prefix_tokens: list[int] | None = Field(None, description="Token ids placed before the prompt.")
    add_bos: bool | None = Field(None, description="Put the BOS token first (None: as the model says).")


class ChatConfig(_Partial):
    """Overrides of a ChatModule's configuration (MLC's `ChatConfig`); see the module docstring."""

    model_lib: str | None = Field(None, description="A llama.cpp shared library (as `model_lib_path`).")
    conv_template: str | None = Field(
        None, description="A built-in template name, a JSON template file, or LM for raw text."
    )
    temperature: float | None = None
    repetition_penalty: float | None = None
    top_p: float | None = None
    max_gen_len: int | None = Field(None, description="Most tokens in one reply.")
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    context_window_size: int | None = Field(None, description="Each session's context, in tokens.")
    conv_config: ConvConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_mlc_only_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and (ignored := sorted(MLC_ONLY_FIELDS & data.keys())):
            log.warning("ChatConfig fields %s are MLC compiler settings with no effect on llama.cpp", ignored)
            data = {k: v for k, v in data.items() if k not in MLC_ONLY_FIELDS}
        return data


class GenerationConfig(_Partial):
    """Settings for one `generate` call (MLC's `GenerationConfig`); `n` replies are sampled."""

    temperature: float | None = None
    repetition_penalty: float | None = None
    top_p: float | None = None
    max_gen_len: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=16, description="How many replies to sample.")


def merge(base: ChatConfig, override: ChatConfig | None) -> ChatConfig:
    """`base` with every field `override` sets replaced; `conv_config` merged field by field."""
    if override is None:
        return base
    values = base.set_fields() | override.set_fields()
    if base.conv_config and override.conv_config:
        values["conv_config"] = ConvConfig(
            **base.conv_config.set_fields() | override.conv_config.set_fields()
        )
    return ChatConfig(**values)


def load_config_file(folder: Path) -> ChatConfig:
    """The `hearth-chat-config.json` in `folder`, or an empty config when there is none."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return ChatConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of ChatConfig fields")
    try:
        config = ChatConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a valid chat config: {exc}") from None
    log.info("chat config: %s", path)
    return config


# MLC's field name -> GenerationSettings' field name, for the fields that shape sampling.
_SETTINGS_NAMES = {
    "temperature": "temperature",
    "repetition_penalty": "repetition_penalty",
    "top_p": "top_p",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "max_gen_len": "max_new_tokens",
    "stop": "stop",
}


def generation_settings(config: ChatConfig, generation: GenerationConfig | None = None) -> GenerationSettings:
    """The validated settings of one generation: the chat config, then the call's overrides.
    MLC's names map onto Hearth's (`max_gen_len` is `max_new_tokens`); `n` stays with the request."""
    values: dict[str, Any] = {}
    for layer in (config, generation or GenerationConfig()):
        for mlc_name, value in layer.set_fields().items():
            if mlc_name in _SETTINGS_NAMES:
                values[_SETTINGS_NAMES[mlc_name]] = value
    if isinstance(values.get("stop"), str):
        values["stop"] = [values["stop"]]
    return GenerationSettings.model_validate(values)
