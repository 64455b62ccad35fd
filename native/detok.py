"""Turn a stream of token bytes into text deltas that are safe to show.

Two things must never reach the user: half a UTF-8 character (a token may end inside one) and any
part of a stop string (a stop string may span several tokens). Each token's bytes are decoded once;
the reply is never detokenized again as a whole.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    """Feed token bytes in, get back the text that can be shown now; finds stop strings across tokens."""

    def __init__(self, stop: tuple[str, ...] | list[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """Everything shown so far (the final reply once the stream ends)."""
        return self._text[: self._emitted]

    def feed(self, data: bytes) -> str:
        """Add one token's bytes; return the newly safe text. After a stop string, returns '' forever."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(data)
        # Only the tail can hold a new stop string: one that started before it would have been found.
        window = max(0, self._emitted - self._longest_stop)
        cut = self._find_stop(window)
        if cut is not None:
            self.stopped = True
            self._text = self._text[:cut]
            return self._take(cut)
        return self._take(len(self._text) - self._held_back())

    def flush(self) -> str:
        """End of generation: release text held back as a possible stop-string start."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(b"", final=True)
        return self._take(len(self._text))

    def _take(self, end: int) -> str:
        delta = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return delta

    def _find_stop(self, start: int) -> int | None:
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is the beginning of some stop string."""
        text = self._text
        for n in range(min(self._longest_stop - 1, len(text) - self._emitted), 0, -1):
            tail = text[-n:]
            if any(s.startswith(tail) for s in self._stop):
                return n
        return 0
