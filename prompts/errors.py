"""The two ways a chat template can fail: it does not exist, or it cannot render."""

from __future__ import annotations


class TemplateError(ValueError):
    """A chat template failed to compile or render (bad Jinja, a sandbox violation, or the template's own
    `raise_exception`, e.g. for roles it does not support). The message names the template."""


class UnknownTemplate(ValueError):
    """No built-in template has this name and no JSON file exists at this path. The message lists the
    built-in names, so the fix is one copy-paste away."""
