"""The engine protocol: what every engine offers the faces (llm/), so that none of them probes an engine
for what it can do. The llama.cpp engine (native/engine.py), the torch engine (native/torch_engine.py)
and the remote engine (native/remote.py) implement it; tests/test_protocol.py checks every engine class
against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from native.sampling import SamplingParams
from native.stream import Stream


@runtime_checkable
class EngineProtocol(Protocol):
    renders_chat: bool
    """True when the engine applies the chat template itself (a server): chat models then submit
    messages. False: they submit rendered prompt text or token ids."""

    @property
    def model_name(self) -> str: ...

    @property
    def n_ctx(self) -> int | None:
        """Each session's context in tokens (None: the server did not say)."""

    @property
    def closed(self) -> bool: ...

    def submit(
        self,
        prompt: str | Sequence[int] | Sequence[Mapping[str, Any]],
        sampling: SamplingParams | None = None,
        session: str | None = None,
        *,
        followed_by: str | None = None,
        user: str | None = None,
    ) -> Stream:
        """Start a generation; the returned Stream yields its text and ends with a Completion.
        `session` keeps a conversation's cache, `followed_by` is the text its next prompt will
        carry right after this reply (computed ahead when it can be), and `user` is whose request
        it is (caches are shared only among one user's requests)."""

    def forget_session(self, session: str, user: str | None = None) -> None:
        """Drop a session's cache wherever the engine keeps it (its chat was deleted or reset)."""

    def save_sessions(self) -> None:
        """Keep every session's cache where a restart finds it (the process is stopping)."""

    def stats(self) -> dict: ...

    def close(self) -> None: ...
