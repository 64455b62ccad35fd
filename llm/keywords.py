"""Keywords that mean what they say: an unknown one is refused, naming the closest known one.

A misspelt setting that is silently ignored runs with the default instead: `HearthLLM(temprature=0.1,
max_new_token=5)` used to generate at temperature 0.5 for 128 tokens without a word. Every face of
Hearth (the LangChain classes, ChatModule, NanoLLM, the ctransformers API) checks its keywords here.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel

F = TypeVar("F", bound=Callable[..., Any])


class UnknownKeyword(TypeError):
    """Keywords a callable does not take; a TypeError, as Python raises for an unexpected keyword."""

    def __init__(self, owner: str, unknown: Iterable[str], known: Iterable[str]) -> None:
        known = sorted(set(known))
        self.unknown = list(unknown)
        self.suggestions = {name: closest(name, known) for name in self.unknown}
        reasons = [
            f"`{name}`: did you mean `{match}`?" if match else f"`{name}` is not one of its keywords"
            for name, match in self.suggestions.items()
        ]
        listed = f" (it takes: {', '.join(known)})" if None in self.suggestions.values() else ""
        super().__init__(f"{owner}: {'; '.join(reasons)}{listed}")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known keyword `name` most likely misspells, or None when none is close."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise UnknownKeyword for every name of `given` that is not in `known`."""
    known = set(known)
    unknown = [name for name in given if name not in known]
    if unknown:
        raise UnknownKeyword(owner, unknown, known)


def field_names(model: type[BaseModel]) -> set[str]:
    """Every keyword a pydantic model accepts: its fields' names and their aliases."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def canonical(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with aliases replaced by their field's name (`max_tokens` -> `max_new_tokens`), so that
    a value given by alias overrides one given by name instead of losing to it."""
    by_alias: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias, info.alias]
        by_alias.update({choice: name for choice in choices if isinstance(choice, str) and choice != name})
    return {by_alias.get(key, key): value for key, value in values.items()}


def checked(func: F) -> F:
    """Refuse unknown keywords of `func` with a suggestion (Python's own TypeError names none)."""
    signature = inspect.signature(func)
    parameters = signature.parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise ValueError(f"{func.__qualname__} takes **kwargs: check them where they are used")
    known = [
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in ("self", "cls")
    ]
    owner = func.__qualname__.removesuffix(".__init__")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(owner, kwargs, known)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
