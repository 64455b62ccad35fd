"""`Function`: a Python function the model may call, described by its signature and docstring.

The signature becomes a pydantic model, which both validates a call's arguments and gives the JSON
schema that describes the function to the model (and constrains its output with a grammar).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from llm.settings import problems


class CallError(ValueError):
    """A function call that cannot run: malformed, unknown function, or bad arguments. The message is
    written for the chat: it says what was wrong so the model (or its user) can try again."""


@dataclass
class Function:
    """One callable function: its name as the model writes it, its description, its arguments model."""

    name: str
    description: str
    func: Callable[..., Any]
    arguments: type[BaseModel]
    enabled: bool = field(default=True, compare=False)
    """Disabled functions are neither described to the model nor run."""

    @classmethod
    def from_callable(
        cls, func: Callable[..., Any], name: str | None = None, description: str | None = None
    ) -> Function:
        """Describe `func`: named parameters with type hints (untyped ones accept any JSON value)."""
        name = name or func.__name__
        if not name.isidentifier():
            raise ValueError(f"function name {name!r} is not an identifier the model can write")
        doc = description if description is not None else inspect.getdoc(func) or ""
        return cls(name=name, description=doc.strip(), func=func, arguments=arguments_model(func, name))

    @property
    def signature(self) -> str:
        """`NAME(a: int, b: str = 'x')`, as shown to the model."""
        parts = []
        for pname, info in self.arguments.model_fields.items():
            annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
            part = f"{pname}: {annotation}"
            parts.append(part if info.is_required() else f"{part} = {info.default!r}")
        return f"{self.name}({', '.join(parts)})"

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments object."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return schema

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments as validated keyword arguments, or CallError."""
        names = list(self.arguments.model_fields)
        if len(args) > len(names):
            raise CallError(f"{self.signature} takes {len(names)} arguments, {len(args)} were given")
        values = dict(zip(names, args, strict=False))
        if twice := sorted(values.keys() & kwargs.keys()):
            raise CallError(f"{self.name}() got {twice} both by position and by name")
        values.update(kwargs)
        try:
            validated = self.arguments.model_validate(values)
        except ValidationError as exc:
            raise CallError(f"bad arguments for {self.signature}: {problems(exc, 'arguments')}") from None
        return {k: getattr(validated, k) for k in self.arguments.model_fields}


def arguments_model(func: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of `func`'s parameters; unknown argument names are refused."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # a hint naming something not importable here: validate those loosely
        hints = {}
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{name}: *args and **kwargs cannot be described to a model; name each parameter")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{name}_arguments", __config__=config, **fields)
