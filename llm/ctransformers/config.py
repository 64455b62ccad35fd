"""ctransformers' `Config` and `AutoConfig`, with its field names and defaults.

Code written for ctransformers passes these as keywords (`from_pretrained(..., max_new_tokens=256)`,
`llm(prompt, temperature=0.1)`) or as LangChain's `config={...}`; each keeps ctransformers' meaning:
its defaults, not Hearth's, so a program gets the replies it got before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm import keywords


@dataclass
class Config:
    # sample
    top_k: int = 40
    top_p: float = 0.95
    temperature: float = 0.8
    repetition_penalty: float = 1.1
    last_n_tokens: int = 64
    """How many recent tokens the repetition penalty looks at."""
    seed: int = -1
    """-1 draws a new seed for every generation."""

    # eval
    batch_size: int = 8
    """Prompt tokens evaluated at once; Hearth's engine batches prompts with every other session's."""
    threads: int = -1
    """-1: Hearth's default (the physical cores)."""

    # generate
    max_new_tokens: int = 256
    stop: Sequence[str] | None = None
    stream: bool = False
    reset: bool = True
    """Start from an empty context; False continues from the previous generation's tokens."""

    # model
    context_length: int = -1
    """-1: Hearth's default (the model's, at most 4096 tokens)."""
    gpu_layers: int = 0
    """0 runs on the CPU; more offloads to the GPU (llama.cpp's CUDA, Metal or Vulkan build)."""


FIELDS = frozenset(f.name for f in dataclasses.fields(Config))


@dataclass
class AutoConfig:
    config: Config
    model_type: str | None = None


INT_FIELDS = frozenset({"top_k", "last_n_tokens", "seed", "batch_size", "threads", "max_new_tokens"})
INT_FIELDS |= {"context_length", "gpu_layers"}


def config_with(owner: str, base: Config | None, values: Mapping[str, Any]) -> Config:
    """A copy of `base` (or the defaults) with `values` set; an unknown key is refused, naming the field
    meant (ctransformers raises TypeError for one too, without the suggestion)."""
    keywords.check(owner, values, FIELDS)
    return dataclasses.replace(base or Config(), **{k: typed(k, v) for k, v in values.items()})


def typed(name: str, value: Any) -> Any:
    """Counts are whole numbers. A whole float is one (Chainlit's sliders send 50.0 for 50); 2.5 tokens
    is refused here rather than failing deep in llama.cpp's C calls."""
    if name not in INT_FIELDS or value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    return value
