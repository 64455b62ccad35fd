"""Which chat session uses which engine, and unloading the engines nobody uses.

`load_engine` already shares one engine per model among everyone; the pool adds the bookkeeping a
long-running app needs: each session holds one engine at a time, and an engine that no session has
held for `unload_after` seconds is closed, which frees its weights and KV cache. A later session that
picks the model loads it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from llm._base import configured_engine
from llm.settings import EngineConfig
from native import Engine, RemoteEngine

log = logging.getLogger("hearth.app")

AnyEngine = Engine | RemoteEngine


class EnginePool:
    """Sessions -> engines, with idle engines unloaded after `unload_after` seconds (<= 0: never).

    `acquire` may load a model (seconds): call it off the event loop. `release` never blocks long.
    """

    def __init__(
        self,
        unload_after: float | None = None,
        loader: Callable[[str | None], AnyEngine] = configured_engine,
    ) -> None:
        self.unload_after = EngineConfig().unload_after if unload_after is None else unload_after
        self._load = loader
        self._lock = threading.Lock()
        self._held: dict[str, AnyEngine] = {}  # session id -> the engine it uses
        self._idle_since: dict[int, float] = {}  # id(engine) -> when its last user left

    def acquire(self, model: str | None, session: str) -> AnyEngine:
        """The engine for `model`, held by `session` (whose previous engine, if another, is released)."""
        while True:
            engine = self._load(model)
            with self._lock:
                if engine.closed:
                    continue  # unloaded between loading and here: load it again
                previous = self._held.get(session)
                self._held[session] = engine
                self._idle_since.pop(id(engine), None)
            if previous is not None and previous is not engine:
                self._left(previous)
            return engine

    def release(self, session: str) -> None:
        """`session` ended: it holds no engine any more."""
        with self._lock:
            engine = self._held.pop(session, None)
        if engine is not None:
            self._left(engine)

    def _left(self, engine: AnyEngine) -> None:
        """A session stopped using `engine`: start its idle clock if that was the last one."""
        with self._lock:
            if any(held is engine for held in self._held.values()) or self.unload_after <= 0:
                return
            stamp = time.monotonic()
            self._idle_since[id(engine)] = stamp
        timer = threading.Timer(self.unload_after, self._unload_if_idle, (engine, stamp))
        timer.daemon = True
        timer.start()

    def _unload_if_idle(self, engine: AnyEngine, stamp: float) -> None:
        with self._lock:
            if self._idle_since.get(id(engine)) != stamp:
                return  # someone picked it up again since (and maybe left again: a newer timer runs)
            del self._idle_since[id(engine)]
            engine.close()
        log.info("unloaded model %s: unused for %.0f s", engine.model_name, self.unload_after)
