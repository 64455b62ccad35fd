"""What the Python APIs share about prompts: the template a model's conversations get (the rule ChatHearth
follows too) and which stop tokens the engine can honour."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import prompts
from native import Engine

log = logging.getLogger("hearth.nano")


def model_template(engine: Engine, override: str | None = None) -> prompts.ChatTemplate:
    """`override` (a built-in name or a JSON file) if given, else the template `prompts.template_for`
    picks from the model's GGUF metadata: its embedded template, a guess from its architecture and
    name, or chat-ml."""
    info = engine.info
    return prompts.template_for(
        chat_template=info.chat_template,
        architecture=info.architecture,
        model_name=info.name or info.path.stem,
        eos_token=info.eos_token,
        bos_token=info.bos_token,
        override=override,
    )


def stop_strings(engine: Engine, stop_tokens: Iterable[str | int] | None) -> tuple[str, ...]:
    """The stop strings among `stop_tokens`. Token ids are accepted for the model's end-of-generation
    token, where the engine stops anyway; other ids are named in a warning, as the engine stops only
    at end-of-generation tokens and at stop strings."""
    strings: list[str] = []
    eos = engine.info.eos_token
    eos_ids = set(engine.tokenize(eos, add_special=False)) if eos else set()
    for stop in stop_tokens or ():
        if isinstance(stop, str):
            if stop:
                strings.append(stop)
        elif isinstance(stop, int) and not isinstance(stop, bool):
            if stop not in eos_ids:
                log.warning(
                    "stop token %d is not %s's end-of-generation token %s: generation does not stop at "
                    "it unless llama.cpp marks it as one; give its text as a stop string instead",
                    stop, engine.model_name, sorted(eos_ids),
                )  # fmt: skip
        else:
            raise TypeError(f"a stop token is a string or a token id, got {stop!r}")
    return tuple(dict.fromkeys(strings))
