"""Finding, parsing and running function calls in a model's output. Never `eval()`.

A call is spelled the Python way, `NAME(3, city="Paris")`, or as JSON, `{"name": "NAME", "arguments":
{...}}` (what grammar-constrained tool calls produce). A Python call is parsed with `ast` and only
literal arguments are accepted (numbers, strings, lists, dicts, True/False/None and JSON's
true/false/null); the name must be a registered function's and the arguments must validate against
its signature. Anything else is refused with a message that says why.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llm.tools.spec import CallError, Function

log = logging.getLogger("hearth.tools")

MAX_CALL_CHARS = 2000
"""A call still open after this many characters is taken for prose, not a call."""

_JSON_WORDS = {"true": True, "false": False, "null": None}
_PAIRS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Call:
    """A parsed call: the function's name and its arguments as written."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Found:
    """A complete call located in a text: `text[start:end]` is `source`."""

    start: int
    end: int
    source: str
    backticked: bool


@dataclass(frozen=True)
class Outcome:
    """What running a call gave: the text to put into the chat, and whether it succeeded."""

    ok: bool
    text: str
    name: str | None = None


def parse_call(source: str) -> Call:
    """A call from its Python or JSON spelling (surrounding backticks and blanks ignored)."""
    text = source.strip().strip("`").strip()
    if text.startswith("{"):
        return parse_json_call(text)
    return parse_python_call(text)


def parse_python_call(source: str) -> Call:
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CallError(f"{source!r} is not a function call: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise CallError(f"{source!r} is not a call of the form NAME(arguments)")
    args = tuple(_literal(arg, source) for arg in node.args)
    kwargs = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise CallError(f"{source!r}: **arguments are not accepted; name each argument")
        kwargs[keyword.arg] = _literal(keyword.value, source)
    return Call(node.func.id, args, kwargs)


def parse_json_call(source: str) -> Call:
    try:
        data = json.loads(source)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CallError(f"the function call is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise CallError('a JSON function call is an object {"name": ..., "arguments": {...}}')
    arguments = data.get("arguments", {})
    if not isinstance(arguments, dict):
        raise CallError(f"the arguments of {data['name']} must be a JSON object, got {arguments!r}")
    return Call(data["name"], (), arguments)


def _literal(node: ast.expr, source: str) -> Any:
    if isinstance(node, ast.Name) and node.id in _JSON_WORDS:
        return _JSON_WORDS[node.id]
    if isinstance(node, ast.Starred):
        raise CallError(f"{source!r}: *arguments are not accepted; write each argument")
    try:
        return ast.literal_eval(node)  # literals only: no names, calls or operators are evaluated
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise CallError(
            f"{source!r}: arguments must be literal values (numbers, strings, lists, dicts, "
            f"True/False/None), not {ast.unparse(node)!r}"
        ) from None


def run_call(source: str, functions: Mapping[str, Function]) -> Outcome:
    """Parse, check and run one call. Failures (malformed call, unknown or disabled function, bad
    arguments, an exception in the function) come back as `ok=False` with a message, never raised."""
    try:
        call = parse_call(source)
        function = functions.get(call.name)
        if function is None or not function.enabled:
            known = ", ".join(sorted(n for n, f in functions.items() if f.enabled)) or "none"
            raise CallError(f"{call.name} is not a function you can call (available: {known})")
        kwargs = function.bind(list(call.args), dict(call.kwargs or {}))
    except CallError as exc:
        log.info("refused function call %r: %s", source, exc)
        return Outcome(False, str(exc))
    try:
        value = function.func(**kwargs)
    except Exception as exc:  # the function's own failure is reported in the chat, not raised
        log.exception("function %s failed", call.name)
        return Outcome(False, f"{call.name}() failed: {type(exc).__name__}: {exc}", call.name)
    log.info("ran %s -> %r", source, value)
    return Outcome(True, "" if value is None else str(value), call.name)


def find_call(text: str, names: Iterable[str], start: int = 0) -> Found | None:
    """The first complete call in `text[start:]`: a registered name followed by `(`, or any call in
    backticks (so that a call to an unknown function gets an answer too). None while a call is still
    being written, or when there is none."""
    pattern = _call_pattern(tuple(sorted(names)))
    for match in pattern.finditer(text, start):
        backticked = match.group("tick") is not None
        begin = match.start() + (1 if backticked else 0)
        end = _closing(text, match.end() - 1)
        if end is None:
            if len(text) - begin <= MAX_CALL_CHARS:
                return None  # wait for the rest of this call before looking further
            continue
        return Found(begin, end, text[begin:end], backticked)
    return None


@functools.lru_cache(maxsize=64)  # one pattern per set of names, reused for every delta
def _call_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    listed = "|".join(re.escape(n) for n in names)
    registered = rf"(?<![\w.])(?:{listed})\(" if names else r"(?!x)x"
    return re.compile(rf"(?P<tick>`)\s*[A-Za-z_]\w*\(|{registered}")


def _closing(text: str, open_index: int) -> int | None:
    """The index just past the parenthesis that closes the one at `open_index`, skipping brackets
    and quoted strings inside; None if the text ends first."""
    expected: list[str] = []
    quote: str | None = None
    i = open_index
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in _PAIRS:
            expected.append(_PAIRS[c])
        elif expected and c == expected[-1]:
            expected.pop()
            if not expected:
                return i + 1
        i += 1
    return None
