"""The models a server serves, each under a UID, and what it takes to prompt them.

`--model NAME=MODEL` serves MODEL as NAME; a bare MODEL is served under its own name. Several UIDs
may name one file: they share one engine (one copy of the weights).

A request naming a model not served: with one model served, that model answers (the reply's `model`
says which, and the log warns once per name), as MLC's and llama.cpp's servers do, so clients written
for them (MLC's REST example sends "vicuna-v1-7b") run as they are. With several models there is no
telling which was meant: a 404 that lists them, never a guess. `--strict-model-names` gives the 404
for one model too.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import prompts
from llm._base import model_template
from llm.rest.errors import APIError
from native import Engine, RemoteEngine, load_engine
from native.remote import is_remote

log = logging.getLogger("hearth.rest")

_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ServedModel:
    uid: str
    engine: Engine | RemoteEngine
    template: prompts.ChatTemplate | None
    """The chat template rendered here; None for a remote engine, whose server renders its own."""
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, uid: str, engine: Engine | RemoteEngine) -> ServedModel:
        renders_here = not engine.renders_chat
        return cls(uid, engine, model_template(engine.info) if renders_here else None)  # type: ignore[union-attr]

    def describe(self) -> dict:
        """This model's /v1/models entry."""
        return {
            "id": self.uid,
            "object": "model",
            "created": self.created,
            "owned_by": "hearth",
            "context_length": self.engine.n_ctx,
        }


def parse_spec(spec: str) -> tuple[str | None, str]:
    """`NAME=MODEL` -> (NAME, MODEL); a bare MODEL -> (None, MODEL). A URL's query keeps its '='."""
    uid, sep, model = spec.partition("=")
    if sep and _UID.fullmatch(uid) and model:
        return uid, model
    return None, spec


def default_uid(model: str, engine: Engine | RemoteEngine) -> str:
    """A bare name is its own UID; a path is served as its file's stem, a URL as the remote's name."""
    if is_remote(model) or "/" in model or model.lower().endswith(".gguf"):
        return engine.model_name if is_remote(model) else Path(model).stem
    return model


class ServedModels:
    """UID -> model, loaded once when the server starts."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.by_uid = {m.uid: m for m in models}
        self._stood_in_for: set[str] = set()

    @classmethod
    def load(cls, specs: list[str], device: str, **options: object) -> ServedModels:
        models: list[ServedModel] = []
        for spec in specs:
            uid, model = parse_spec(spec)
            engine = load_engine(model, device, **options)  # type: ignore[arg-type]
            uid = uid or default_uid(model, engine)
            if any(m.uid == uid for m in models):
                raise ValueError(f"two models are served as {uid!r}; name one with --model NAME={model}")
            models.append(ServedModel.of(uid, engine))
            _log_model(uid, engine)
        return cls(models)

    def __iter__(self):
        return iter(self.by_uid.values())

    def get(self, uid: str | None, strict: bool = False) -> ServedModel:
        """The model a request names; see the module docstring for a name not served."""
        only = next(iter(self.by_uid.values())) if len(self.by_uid) == 1 else None
        if uid is None:
            if only is not None:
                return only
            raise APIError(400, f"name a model: one of {', '.join(self.by_uid)}", param="model")
        model = self.by_uid.get(uid)
        if model is None and only is not None and not strict:
            if uid not in self._stood_in_for:
                self._stood_in_for.add(uid)
                log.warning(
                    "requests for model %r are answered by %r, the one model served "
                    "(--strict-model-names refuses them)",
                    uid,
                    only.uid,
                )
            return only
        if model is None:
            raise APIError(
                404,
                f"the model {uid!r} is not served here; served: {', '.join(self.by_uid)}",
                param="model",
                code="model_not_found",
            )
        return model


def _log_model(uid: str, engine: Engine | RemoteEngine) -> None:
    if isinstance(engine, RemoteEngine):
        log.info("serving %r: model %r of the server at %s", uid, engine.model_name, engine.url)
        return
    log.info(
        "serving %r: %s on %s with %d threads, %d slots of %d tokens",
        uid,
        engine.info.path.name,
        engine.device,
        engine.n_threads,
        engine.parallel,
        engine.n_ctx,
    )


class Sessions:
    """Session name -> the engine's session key. `/chat/reset` moves a session to a fresh key, so its
    next request starts with an empty cache (the old slot is reclaimed like any least recently used
    one)."""

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}

    def key(self, session: str | None) -> str | None:
        if session is None:
            return None
        epoch = self._epochs.get(session, 0)
        return f"{session}#{epoch}" if epoch else session

    def reset(self, session: str) -> None:
        self._epochs[session] = self._epochs.get(session, 0) + 1
