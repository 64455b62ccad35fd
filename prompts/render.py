"""`render`: a conversation and a chat template in, the exact prompt text and its stop strings out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from prompts._sandbox import compile_template
from prompts.errors import TemplateError
from prompts.template import ChatTemplate, get_template

# LangChain's message types ("human", "ai") and NanoLLM's ChatHistory ("bot") name the roles
# differently from the OpenAI-style names every template is written for.
ROLE_ALIASES = {"human": "user", "ai": "assistant", "bot": "assistant"}


@dataclass(frozen=True)
class Prompt:
    """What to send to the model: the text to tokenize and the strings that end its reply."""

    text: str
    stop: tuple[str, ...]


def render(
    messages: Iterable[Mapping[str, object]],
    template: ChatTemplate | str | Path,
    *,
    add_generation_prompt: bool = True,
) -> Prompt:
    """Render `messages` ({"role", "content"} mappings) with `template` (a ChatTemplate, a built-in
    name or a JSON file path). With `add_generation_prompt` the text ends where the assistant's reply
    begins, so the model writes the next turn."""
    if not isinstance(template, ChatTemplate):
        template = get_template(template)
    compiled = compile_template(template.source)  # cached: compiling happens once per template text
    try:
        text = compiled.render(
            messages=_normalise(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=template.bos_token,
            eos_token=template.eos_token,
            system_prompt=template.system_prompt,
        )
    except (jinja2.TemplateError, TypeError) as exc:
        # jinja2.TemplateError covers the template's own raise_exception, undefined values and the
        # sandbox's SecurityError; TypeError is what `'text' + none` inside a template raises.
        message = f"chat template {template.name!r} cannot render this conversation: {exc}"
        raise TemplateError(message) from exc
    return Prompt(text=text, stop=template.stop)


def _normalise(messages: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    """Copy the messages (templates must not see, let alone keep, the caller's objects) with their roles
    mapped to the names templates expect. Other keys pass through for templates that use them."""
    normalised = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(
                f"message {index} must be a mapping with a string 'role' and a string 'content', "
                f"got {message!r}"
            )
        normalised.append({**message, "role": ROLE_ALIASES.get(role, role), "content": content})
    return normalised
