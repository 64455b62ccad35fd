"""`ChatTemplate`: a chat template as data (Jinja text, stop strings, a default system prompt), and where
templates come from: the built-in JSON files in `templates/`, a user's JSON file, or a GGUF's own
`tokenizer.chat_template`.

A template file holds {"name", "template", "stop", "system_prompt"} and optionally "bos_token",
"eos_token" and a human "comment" (JSON has no comments; it says where the format comes from).
"template" is a string, or a list of strings joined with nothing between them so a long template can be
read one piece per line.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from prompts._sandbox import compile_template
from prompts.errors import TemplateError, UnknownTemplate

BUILTIN_DIR = Path(__file__).parent / "templates"
_FILE_KEYS = ("name", "template", "stop", "system_prompt", "bos_token", "eos_token", "comment")


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and what a generation with it needs besides the prompt text."""

    name: str
    """Shown in errors and logs: the built-in name, the file's name, or "gguf" for an embedded template."""
    source: str
    """Jinja text, rendered with `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and
    `system_prompt` (see `prompts.render`)."""
    stop: tuple[str, ...] = ()
    """Strings that end the model's turn; generation stops before them."""
    system_prompt: str | None = None
    """Default system prompt, used when the conversation has none and the template wants one."""
    bos_token: str = ""
    """Text of the BOS token for templates that write `{{ bos_token }}`. Empty by default because the
    tokenizer already adds BOS; writing it again would put two BOS tokens in front of the prompt."""
    eos_token: str = ""
    """Text of the EOS token for templates that write `{{ eos_token }}` after each turn."""

    def __post_init__(self) -> None:
        # Accept any iterable of strings (a JSON list) but store a tuple, so templates stay hashable.
        object.__setattr__(self, "stop", tuple(self.stop))
        if not all(isinstance(s, str) and s for s in self.stop):
            raise TemplateError(f"chat template {self.name!r}: every stop string must be non-empty text")
        # Compile now, so a broken template fails when it is loaded, not at the first chat message.
        try:
            compile_template(self.source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template {self.name!r} is not valid Jinja: {exc}") from exc

    @classmethod
    def from_jinja(
        cls,
        source: str,
        *,
        name: str = "gguf",
        stop: Iterable[str] = (),
        bos_token: str = "",
        eos_token: str = "",
    ) -> ChatTemplate:
        """A model's own template (a GGUF's `tokenizer.chat_template`). It carries its own default
        system prompt, if any, in its Jinja text."""
        return cls(name=name, source=source, stop=tuple(stop), bos_token=bos_token, eos_token=eos_token)

    @classmethod
    def from_file(cls, path: str | Path) -> ChatTemplate:
        """Load a JSON template file in the same format as the built-ins."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TemplateError(f"chat template file {path} is not valid JSON: {exc}") from exc
        return _from_dict(data, default_name=path.stem, origin=str(path))


def _from_dict(data: object, *, default_name: str, origin: str) -> ChatTemplate:
    if not isinstance(data, dict) or "template" not in data:
        raise TemplateError(f"{origin}: a chat template file is a JSON object with a 'template' key")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        # Typos ("stops", "system") would otherwise be ignored and the template silently misbehave.
        raise TemplateError(f"{origin}: unknown keys {unknown}; allowed keys are {list(_FILE_KEYS)}")
    source = data["template"]
    if isinstance(source, list):
        source = "".join(source)
    if not isinstance(source, str):
        raise TemplateError(f"{origin}: 'template' must be a string or a list of strings")
    return ChatTemplate(
        name=data.get("name") or default_name,
        source=source,
        stop=tuple(data.get("stop") or ()),
        system_prompt=data.get("system_prompt"),
        bos_token=data.get("bos_token", ""),
        eos_token=data.get("eos_token", ""),
    )


def list_templates() -> list[str]:
    """Names of the built-in templates, sorted."""
    return list(_builtin_names())


# Built-ins ship with the package and never change while it runs, so the folder is listed and each
# file read once; `render(messages, "chat-ml")` then costs a dictionary lookup, not disk access.
@functools.cache
def _builtin_names() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in BUILTIN_DIR.glob("*.json")))


@functools.cache
def _builtin(name: str) -> ChatTemplate:
    return ChatTemplate.from_file(BUILTIN_DIR / f"{name}.json")


def get_template(name_or_path: str | Path) -> ChatTemplate:
    """A built-in template by name (see `list_templates()`), or a template loaded from a JSON file."""
    name = str(name_or_path)
    if name in _builtin_names():
        return _builtin(name)
    path = Path(name).expanduser()
    if path.is_file():
        return ChatTemplate.from_file(path)
    raise UnknownTemplate(
        f"unknown chat template {name!r}: it is neither a built-in template nor a JSON file. "
        f"Built-in templates: {', '.join(list_templates())}; or pass the path to a JSON template file."
    )
