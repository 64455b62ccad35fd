"""`template_for`: which chat template a model gets.

In order: the user's override, the template embedded in the GGUF (the model's authors wrote it, so it
is the most likely to be right), then a guess from the architecture and model name, and finally
chat-ml, the most widely trained format, with a warning in the log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from prompts.template import ChatTemplate, get_template

log = logging.getLogger("hearth.prompts")

FALLBACK_TEMPLATE = "chat-ml"


@dataclass(frozen=True)
class Guess:
    """One guessing rule: it matches when every given condition holds."""

    template: str
    architecture: str | None = None
    """A prefix of the GGUF's `general.architecture` ("gemma" matches gemma2 and gemma3)."""
    name_has: tuple[str, ...] = ()
    """Substrings that must all occur in the model name (lower case, spaces and underscores as "-")."""

    def matches(self, architecture: str, name: str) -> bool:
        if self.architecture is not None and not architecture.startswith(self.architecture):
            return False
        return all(part in name for part in self.name_has)


# First match wins, so narrower rules come first: "sheared-llama-2.7b" contains "llama-2", and
# "vicuna-7b-v1.5" must not reach the plain vicuna rule.
GUESSES: tuple[Guess, ...] = (
    Guess("gemma", architecture="gemma"),
    Guess("gemma", name_has=("gemma",)),
    Guess("stablelm-zephyr", name_has=("stablelm", "zephyr")),
    Guess("nous-obsidian", name_has=("obsidian",)),
    Guess("sheared-llama", name_has=("sheared-llama",)),
    Guess("vicuna-v1", name_has=("vicuna", "v1")),
    Guess("vicuna-v0", name_has=("vicuna",)),
    Guess("llama-3", name_has=("llama-3",)),
    Guess("llama-3", name_has=("llama3",)),
    Guess("llama-2", name_has=("llama-2",)),
    Guess("llama-2", name_has=("llama2",)),
    Guess("phi-2-instruct", architecture="phi2"),
    Guess("phi-2-instruct", name_has=("phi-2",)),
)


def template_for(
    *,
    chat_template: str | None = None,
    architecture: str | None = None,
    model_name: str | None = None,
    eos_token: str | None = None,
    bos_token: str | None = None,
    override: str | None = None,
) -> ChatTemplate:
    """The chat template for a model, from what its GGUF header says.

    `override` (a built-in name or a JSON path) wins; else the GGUF's `tokenizer.chat_template`
    (`chat_template`), stopping at `eos_token`; else a guess from `architecture` and `model_name`;
    else chat-ml. Pass `bos_token` only if the tokenizer does not add BOS itself."""
    if override:
        log.info("chat template: %s (override)", override)
        return get_template(override)
    if chat_template and chat_template.strip():
        log.info("chat template: embedded in the model file")
        return ChatTemplate.from_jinja(
            chat_template,
            stop=(eos_token,) if eos_token else (),
            bos_token=bos_token or "",
            eos_token=eos_token or "",
        )
    name = guess_template_name(architecture=architecture, model_name=model_name)
    return get_template(name)


def guess_template_name(*, architecture: str | None, model_name: str | None) -> str:
    """The built-in template the first matching rule in GUESSES names, or the chat-ml fallback."""
    arch = (architecture or "").lower()
    name = re.sub(r"[\s_]+", "-", (model_name or "").lower())
    for rule in GUESSES:
        if rule.matches(arch, name):
            log.info("chat template: %s, guessed from %s", rule.template, rule)
            return rule.template
    log.warning(
        "chat template: no template embedded in the model and none known for architecture %r, name %r; "
        "falling back to %s (choose another with a template override)",
        architecture, model_name, FALLBACK_TEMPLATE,
    )
    return FALLBACK_TEMPLATE
