"""The first screen of a new chat: Hearth's mark and name, which model runs on what (size, context,
device, threads), and starters suited to the model: questions for a chat model, the beginning of a text
for a base model (it continues text; it does not follow instructions).

Chainlit's landing shows a chat profile's icon and description above the starters, so Hearth declares
one profile (one profile shows no picker). Describing the model loads nothing: the loaded engine says
what it runs with, else the GGUF header and the configuration say what loading would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import chainlit as cl

from llm.settings import EngineConfig
from llm.web.assets import MARK
from llm.web.model_choices import configured_spec, label_of
from native import Engine, loaded_engines
from native.catalog import format_size
from native.engine import DEFAULT_CTX
from native.errors import HearthError
from native.gguf_info import inspect_gguf
from native.hardware import choose_device, default_threads
from native.remote import is_remote
from native.resolve import resolve_model

PROFILE = "Hearth"

CHAT_STARTERS = [
    cl.Starter(label="Why is the sea salty?", message="Why is the sea salty?"),
    cl.Starter(label="Name three uses of a brick", message="Name three unusual uses of a brick."),
    cl.Starter(label="A poem about autumn", message="Write a short poem about autumn."),
    cl.Starter(label="Explain it to a child", message="Explain to a child how rain forms."),
]
TEXT_STARTERS = [
    cl.Starter(label="Once upon a time…", message="Once upon a time, in a village at the edge of a forest,"),
    cl.Starter(label="The capital of France…", message="The capital of France is"),
    cl.Starter(label="def fibonacci(n):", message="def fibonacci(n):\n    "),
    cl.Starter(label="Dear diary…", message="Dear diary, today I finally"),
]


@dataclass(frozen=True)
class ModelSummary:
    """What the landing says about the model a new chat gets."""

    name: str
    size: int | None
    """Bytes of the model file (None: it runs on a server)."""
    context: int | None
    """Each chat's context in tokens (None: the server's business)."""
    where: str
    """The device, and the threads on a CPU: 'cpu, 2 threads'."""
    follows_instructions: bool
    """A chat model (its file carries a chat template, or a server renders one); else a base model."""

    def line(self) -> str:
        parts = [self.name]
        if self.size is not None:
            parts.append(format_size(self.size))
        if self.context is not None:
            parts.append(f"context {self.context} tokens")
        parts.append(self.where)
        return " · ".join(parts)


def summarize(spec: str, config: EngineConfig | None = None) -> ModelSummary:
    """Describe the model `spec` as a chat would get it; loads nothing. Raises HearthError (or
    OSError) for a model that cannot be found or read."""
    if is_remote(spec):
        return ModelSummary(label_of(spec, config), None, None, "a remote server", True)
    path = resolve_model(spec).resolve()
    for engine in loaded_engines():
        if isinstance(engine, Engine) and not engine.closed and engine.info.path.resolve() == path:
            return _summary(engine.info, engine.n_ctx, str(engine.device), engine.n_threads)
    config = config or EngineConfig()
    info = inspect_gguf(path)
    context = config.ctx_size or min(info.context_length or DEFAULT_CTX, DEFAULT_CTX)
    threads = config.threads or default_threads()
    return _summary(info, context, str(choose_device(config.device)), threads)


def _summary(info, context: int, device: str, threads: int) -> ModelSummary:
    where = f"{device}, {threads} threads" if device == "cpu" else device
    return ModelSummary(info.path.stem, info.file_size, context, where, info.chat_template is not None)


def _configured() -> ModelSummary | str:
    """The configured model's summary, or why it cannot be described."""
    try:
        return summarize(configured_spec())
    except (HearthError, OSError) as exc:
        return f"The model could not be found: {exc}"


async def profiles() -> list[cl.ChatProfile]:
    """The one profile whose icon and description make the landing."""
    summary = await cl.make_async(_configured)()
    line = summary.line() if isinstance(summary, ModelSummary) else summary
    description = f"## Hearth\n\nLocal chat on your own machine: nothing you type leaves it.\n\n`{line}`"
    return [cl.ChatProfile(name=PROFILE, markdown_description=description, icon=MARK, default=True)]


async def starters() -> list[cl.Starter]:
    """Questions for a chat model, beginnings of a text for a base model."""
    summary = await cl.make_async(_configured)()
    if isinstance(summary, ModelSummary) and not summary.follows_instructions:
        return TEXT_STARTERS
    return CHAT_STARTERS
