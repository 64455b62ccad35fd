"""NanoLLM's `bot_function` decorator and `BotFunctions` registry, over `llm.tools`.

    @bot_function
    def DATE():
        \"\"\"Returns the current date.\"\"\"
        return datetime.now().strftime("%A, %B %-d %Y")

    system_prompt = "You are a helpful AI assistant." + BotFunctions.generate_docs()
    reply = model.generate(embedding, functions=BotFunctions(), ...)

Unlike NanoLLM, a call the model writes is never passed to `eval()`: it is parsed, its name looked up
here and its arguments validated against the function's signature (see `llm.tools.calls`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from llm.tools import Function, Outcome, run_call

log = logging.getLogger("hearth.nano")

PROLOGUE = (
    "\n\nYou can call the Python functions listed below by writing the call, for example `{example}`. "
    "The result of each call is added to the chat right after it:\n\n"
)
EPILOGUE = "\n\nWrite calls exactly as shown, with literal values as arguments."


class BotFunctions:
    """The functions the model may call, registered with `@bot_function` (a process-wide list, as in
    NanoLLM). `BotFunctions()` returns the enabled ones, ready for `NanoLLM.generate(functions=...)`."""

    functions: ClassVar[list[Function]] = []

    def __new__(cls, all: bool = False) -> list[Function]:  # type: ignore[misc]  # noqa: A002
        return cls.list(all=all)

    def __class_getitem__(cls, index: int) -> Function:
        return cls.functions[index]

    @classmethod
    def register(
        cls,
        func: Callable[..., Any],
        name: str | None = None,
        docs: str | None = None,
        enabled: bool = True,
    ) -> Callable[..., Any]:
        """Register `func` under `name` (default: its own name); `docs` replaces its docstring.
        Registering a name again replaces the earlier function."""
        function = Function.from_callable(func, name, docs)
        function.enabled = enabled
        if cls.unregister(function.name):
            log.info("bot function %s registered again: the new definition replaces the old", function.name)
        cls.functions.append(function)
        return func

    @classmethod
    def unregister(cls, name: str) -> bool:
        """Remove the function called `name`; False if there was none."""
        kept = [f for f in cls.functions if f.name != name]
        removed = len(kept) != len(cls.functions)
        cls.functions[:] = kept
        return removed

    @classmethod
    def list(cls, all: bool = False) -> list[Function]:  # noqa: A002 - NanoLLM's name
        """The enabled functions (with `all`, the disabled ones too)."""
        return list(cls.functions) if all else [f for f in cls.functions if f.enabled]

    @classmethod
    def len(cls) -> int:
        return len(cls.functions)

    @classmethod
    def filter(cls, names: list[str], mode: str = "enable") -> list[Function]:
        """Enable (or with mode="disable", disable) the named functions; returns the enabled ones."""
        wanted = {n.lower() for n in names}
        for function in cls.functions:
            if function.name.lower() in wanted:
                function.enabled = mode.startswith("enable")
        return cls.list()

    @classmethod
    def generate_docs(cls, prologue: bool | str = True, epilogue: bool | str = True) -> str:
        """A description of the enabled functions for the system prompt: one line per function,
        `* `NAME(params)` - docstring`, between an explanation of how to call them and a reminder."""
        enabled = cls.list()
        if not enabled:
            return ""
        lines = "\n".join(f"* `{f.signature}` - {f.description}".rstrip(" -") for f in enabled)
        if prologue is True:
            prologue = PROLOGUE.format(example=f"{enabled[0].name}()")
        if epilogue is True:
            epilogue = EPILOGUE
        return f"{prologue or ''}{lines}{epilogue or ''}"

    @classmethod
    def run(cls, source: str) -> Outcome:
        """Run one call written by a model, e.g. `TIME()`; refusals come back as messages."""
        return run_call(source, {f.name: f for f in cls.functions})


def bot_function(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    docs: str | None = None,
    enabled: bool = True,
) -> Any:
    """Register a function the model may call: `@bot_function` or `@bot_function(name=..., docs=...)`.
    The function is returned unchanged."""

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        return BotFunctions.register(f, name=name, docs=docs, enabled=enabled)

    return register(func) if func is not None else register
