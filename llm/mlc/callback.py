"""Progress callbacks for `ChatModule.generate`, with MLC-Chat's protocol.

`generate` calls `callback(message)` with the whole reply so far every `callback_interval` tokens
and once at the end, then `callback(stopped=True)`. `DeltaCallback` turns those calls into deltas:
subclass it and implement `delta_callback` (and `stopped_callback` if the end matters).
"""

from __future__ import annotations

import abc
import queue
from collections.abc import Iterator


class DeltaCallback(abc.ABC):
    """Base class of callbacks that want only the new part of the reply."""

    callback_interval: int = 1
    """Call every this many tokens (generate reads it; 1 means every token)."""

    def __init__(self) -> None:
        self.curr_message = ""

    def __call__(self, message: str = "", stopped: bool = False) -> None:
        if stopped:
            self.stopped_callback()
            self.curr_message = ""
            return
        # The reply only grows, so the delta is what follows the part already seen.
        delta = message[len(self.curr_message) :] if message.startswith(self.curr_message) else message
        self.curr_message = message
        if delta:
            self.delta_callback(delta)

    @abc.abstractmethod
    def delta_callback(self, delta_message: str) -> None:
        """Handle the text generated since the previous call."""

    def stopped_callback(self) -> None:  # noqa: B027 - optional hook, doing nothing is the default
        """Called once when the reply ends."""


class StreamToStdout(DeltaCallback):
    """Print the reply as it is generated, then a newline."""

    def __init__(self, callback_interval: int = 2) -> None:
        super().__init__()
        if callback_interval < 1:
            raise ValueError(f"callback_interval must be at least 1, got {callback_interval}")
        self.callback_interval = callback_interval

    def delta_callback(self, delta_message: str) -> None:
        print(delta_message, end="", flush=True)

    def stopped_callback(self) -> None:
        print(flush=True)


class StreamIterator(DeltaCallback):
    """Collect the deltas in a queue that another thread iterates: `for delta in callback: ...`."""

    def __init__(self, callback_interval: int = 2, timeout: float | None = None) -> None:
        super().__init__()
        self.callback_interval = callback_interval
        self.timeout = timeout
        self.delta_messages: queue.Queue[str | None] = queue.Queue()

    def delta_callback(self, delta_message: str) -> None:
        self.delta_messages.put(delta_message, timeout=self.timeout)

    def stopped_callback(self) -> None:
        self.delta_messages.put(None, timeout=self.timeout)  # the end of the iteration

    def __iter__(self) -> Iterator[str]:
        while (delta := self.delta_messages.get(timeout=self.timeout)) is not None:
            yield delta
