"""`create_app`: the FastAPI application over the served models' engines.

Everything a request needs lives in `app.state` (settings, models, sessions, totals): no module-level
state, no locks, so two apps in one process never share anything but the engines themselves (one per
model file, by design).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from llm.heap import settle
from llm.rest import errors, routes
from llm.rest.models import ServedModels, Sessions
from llm.rest.replies import Totals
from llm.rest.settings import ServerSettings

DESCRIPTION = """An OpenAI-compatible API over local GGUF models (llama.cpp), plus MLC-Chat's `/chat/reset`
and `/stats`. With `--api-key`, send `Authorization: Bearer KEY`. Sampling fields left out take Hearth's
defaults; `session_id` (or `user`) keeps a conversation's KV cache in one slot."""


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """A started server settles its heap (llm/heap.py: no 40-110 ms stalls of every stream). A stopping
    server (SIGTERM, Ctrl-C) writes its sessions' KV caches to disk: after a restart, a session's next
    turn computes only its new tokens."""
    settle()
    yield
    for model in app.state.models:
        await run_in_threadpool(model.engine.save_sessions)


def create_app(settings: ServerSettings | None = None, models: ServedModels | None = None) -> FastAPI:
    """The server for `settings` (else `HEARTH_*` variables), loading its models unless given them."""
    settings = settings or ServerSettings()
    if models is None:
        models = ServedModels.load(
            settings.model,
            settings.device,
            n_ctx=settings.ctx_size,
            n_threads=settings.threads,
            parallel=settings.parallel,
            backend=settings.backend,
        )
    app = FastAPI(title="Hearth", description=DESCRIPTION, version="1", lifespan=_lifespan)
    app.state.settings = settings
    app.state.models = models
    app.state.sessions = Sessions()
    app.state.totals = Totals()
    errors.install(app)
    app.include_router(routes.public)
    app.include_router(routes.api)
    return app
