"""Waiting for a condition, with a deadline, instead of sleeping for a guess at how long it takes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL = 0.02  # seconds between looks: the deadline, not this, bounds the wait


def wait_until(condition: Callable[[], T], timeout: float = 30.0, what: str = "the condition") -> T:
    """Poll `condition` until it returns something true, and return that; AssertionError after
    `timeout` seconds (a deadline generous enough for a busy machine: only a failure waits it out)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not met within {timeout:g} s")
        time.sleep(POLL)
    return value

