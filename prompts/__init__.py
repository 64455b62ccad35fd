"""Chat templates and their renderer: a conversation in, the exact prompt text and stop strings out.

Templates are data (Jinja in `templates/*.json`, or a GGUF's own `tokenizer.chat_template`) rendered in a
sandbox. This package imports nothing else of Hearth's and never tokenizes.

    >>> from prompts import render
    >>> render([{"role": "user", "content": "Hi"}], "chat-ml").text
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from prompts.choose import template_for
from prompts.errors import TemplateError, UnknownTemplate
from prompts.render import Prompt, render
from prompts.separator import turn_separator
from prompts.template import ChatTemplate, get_template, list_templates

__all__ = [
    "ChatTemplate",
    "Prompt",
    "TemplateError",
    "UnknownTemplate",
    "get_template",
    "list_templates",
    "render",
    "template_for",
    "turn_separator",
]
