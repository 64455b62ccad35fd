"""The one Jinja environment every chat template renders in, and its compile cache.

Chat templates are code that arrives with model files (a GGUF's `tokenizer.chat_template`) or from users
(JSON files), so they run in Jinja's immutable sandbox: no attribute escapes to Python internals and no
mutating the messages they are given. `trim_blocks` and `lstrip_blocks` match what Hugging Face
transformers and llama-cpp-python's `Jinja2ChatFormatter` use, so templates written for them render here
byte for byte the same: https://huggingface.co/docs/transformers/main/en/chat_templating
"""

from __future__ import annotations

import functools

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise_exception(message: str) -> None:
    # Hugging Face templates call `raise_exception(...)` to reject conversations they cannot express
    # (e.g. roles that do not alternate); jinja2.TemplateError lets `compile_template`'s callers wrap it
    # together with every other Jinja failure.
    raise jinja2.TemplateError(message)


# Built once: creating an environment is cheap, but compiled templates are cached per environment.
# `loopcontrols` ({% break %}, {% continue %}) is enabled because transformers enables it and some
# published templates use it. There is deliberately no `strftime_now`: a prompt that changes with the
# clock would defeat KV-cache prefix reuse between turns, and templates fall back to a fixed date.
_ENV = ImmutableSandboxedEnvironment(
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=[jinja2.ext.loopcontrols],
)
_ENV.globals["raise_exception"] = _raise_exception


@functools.lru_cache(maxsize=128)
def compile_template(source: str) -> jinja2.Template:
    """Compile `source` once; every later render of the same text reuses the compiled template.

    Raises jinja2.TemplateSyntaxError (a jinja2.TemplateError) for malformed templates."""
    return _ENV.from_string(source)
