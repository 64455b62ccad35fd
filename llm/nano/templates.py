"""What the Python APIs share about prompts: which stop tokens the engine can honour. (The template a
model's conversations get is `llm._base.model_template`, the rule ChatHearth follows too.)"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from native import Engine

log = logging.getLogger("hearth.nano")


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
