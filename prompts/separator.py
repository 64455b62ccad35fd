"""`turn_separator`: what a template writes between an assistant's reply and the next user message."""

from __future__ import annotations

import functools
from pathlib import Path

from prompts.errors import TemplateError
from prompts.render import render
from prompts.template import ChatTemplate, get_template

# Stand-ins that survive any template's filters (trim, capitalisation rules do not touch them).
_ASK, _REPLY, _NEXT = "HEARTHASK", "HEARTHREPLY", "HEARTHNEXT"


def turn_separator(template: ChatTemplate | str | Path) -> str | None:
    """The text that follows a reply in the conversation's next prompt, before the next user message:
    `<|im_end|>\\n<|im_start|>user\\n` for chat-ml. An engine can compute it while the user types.

    None when the template does not render the history the same way twice (the first prompt plus the
    reply must begin the next prompt), so there is nothing safe to compute ahead."""
    return _separator(template if isinstance(template, ChatTemplate) else get_template(template))


@functools.lru_cache(maxsize=128)
def _separator(template: ChatTemplate) -> str | None:
    # Asked for on every chat message; two renders per template are enough.
    ask = {"role": "user", "content": _ASK}
    try:
        first = render([ask], template).text
        following = render(
            [ask, {"role": "assistant", "content": _REPLY}, {"role": "user", "content": _NEXT}], template
        ).text
    except TemplateError:
        return None
    if not following.startswith(first + _REPLY):
        return None
    start = len(first) + len(_REPLY)
    end = following.find(_NEXT, start)
    if end < 0:
        return None
    return following[start:end] or None
