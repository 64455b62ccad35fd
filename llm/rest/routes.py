"""The endpoints. Each one validates, submits to the engine (which refuses synchronously what it cannot
serve), then streams or gathers; no lock anywhere: the engine's scheduler serves requests at once."""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

import prompts
from llm.rest import tools
from llm.rest.errors import APIError, from_native
from llm.rest.models import ServedModel
from llm.rest.replies import ResponseBuilder, Totals
from llm.rest.schemas import ChatRequest, CompletionRequest, GenerationRequest, ResetRequest
from llm.rest.sse import gather_unless_gone, stream_response
from llm.tools import langchain as tool_calls
from native import SamplingParams, Stream
from native.errors import ContextOverflow, HearthError


async def require_key(request: Request) -> None:
    """With --api-key, every API call must carry `Authorization: Bearer KEY` (compared in constant time)."""
    expected = request.app.state.settings.key()
    if expected is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise APIError(
            401,
            "missing or wrong API key: send the header `Authorization: Bearer KEY`",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def served(request: Request, uid: str | None) -> ServedModel:
    """The model a request names (see llm.rest.models for a name that is not served)."""
    return request.app.state.models.get(uid, strict=request.app.state.settings.strict_model_names)


public = APIRouter()
api = APIRouter(dependencies=[Depends(require_key)])


@public.get("/health", summary="Liveness and the served models (no key needed: for load balancers)")
async def health(request: Request) -> dict:
    return {"status": "ok", "models": list(request.app.state.models.by_uid)}


@api.get("/v1/models", summary="The served models")
async def list_models(request: Request) -> dict:
    return {"object": "list", "data": [m.describe() for m in request.app.state.models]}


@api.post("/v1/chat/completions", summary="Chat: messages in, the assistant's reply out")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    body.refuse_unsupported()
    model: ServedModel = served(request, body.model)
    choice = body.choice()
    if model.template is None:  # the remote server renders the conversation itself
        if choice is not None:
            raise APIError(
                400,
                f"{model.uid} is served by a remote server: tool calling needs a local model",
                param="tools",
            )
        return await _generate(request, body, model, body.turns(), body.sampling(), "chat")
    turn = tool_calls.tool_turn(body.conversation(), body.tool_dicts(), choice or "none")
    rendered = prompts.render(tools.plain(turn.messages), model.template)
    sampling = body.sampling(rendered.stop)
    if turn.grammar is None:
        return await _generate(request, body, model, rendered.text, sampling, "chat")
    # JSON repeats its quotes and braces by design: repetition penalties are off (`constrained`).
    constrained = sampling.constrained(turn.grammar)
    return await _generate(request, body, model, rendered.text, constrained, "chat", as_calls=True)


@api.post("/v1/completions", summary="Text completion: the prompt is continued as is")
async def completions(body: CompletionRequest, request: Request) -> Response:
    body.refuse_unsupported()
    model: ServedModel = served(request, body.model)
    prompt = body.text()
    return await _generate(request, body, model, prompt, body.sampling(), "text")


@api.api_route("/chat/reset", methods=["GET", "POST"], summary="Start a session's cache over (MLC's API)")
async def reset(request: Request, body: ResetRequest | None = None) -> dict:
    body = body or ResetRequest(**request.query_params)
    model: ServedModel = served(request, body.model)
    session = body.session_id or body.user
    if session:
        sessions = request.app.state.sessions
        # The session's cache leaves every tier (its disk file too), then the session gets a new key.
        await run_in_threadpool(model.engine.forget_session, sessions.key(session), body.user)
        sessions.reset(session)
    return {"object": "chat.reset", "model": model.uid, "session_id": session, "reset": bool(session)}


@api.get("/stats", summary="Runtime figures per model: slots, queue, cached tokens, prefill/decode tok/s")
async def stats(request: Request, model: str | None = None) -> dict:
    chosen = [served(request, model)] if model else list(request.app.state.models)
    totals: Totals = request.app.state.totals
    return {"models": {m.uid: {**m.engine.stats(), "served": totals.of(m.uid)} for m in chosen}}


# -- the shared path of both completions -----------------------------------------------------------


async def _generate(
    request: Request,
    body: GenerationRequest,
    model: ServedModel,
    prompt: str | list[dict[str, str]],
    sampling: SamplingParams,
    kind: Literal["chat", "text"],
    *,
    as_calls: bool = False,
) -> Response:
    """Submit, then stream or gather. `as_calls`: the replies are tool calls' JSON (see llm.rest.tools)."""
    session = request.app.state.sessions.key(body.session)
    try:
        # A chat session's next turn will start with the template's separator: computed while idle.
        follow = (
            prompts.turn_separator(model.template) if kind == "chat" and session and model.template else None
        )
        # Off the event loop: tokenizing a long prompt, or a remote engine's round trip, takes a while.
        streams = await run_in_threadpool(
            _submit, model, prompt, sampling, body.n, session, follow, body.user, body.token_limit()
        )
    except HearthError as exc:
        raise from_native(exc, param="messages" if kind == "chat" else "prompt") from None
    except ValueError as exc:  # what the engine refuses before any work, e.g. a prompt it cannot take
        raise APIError(400, str(exc)) from None
    reply = ResponseBuilder(kind, model.uid, include_usage=body.include_usage, as_calls=as_calls)
    totals: Totals = request.app.state.totals
    if body.stream:
        interval = request.app.state.settings.stream_interval_ms / 1000
        return stream_response(reply, streams, totals, interval)
    completions = await gather_unless_gone(request, streams)
    if completions is None:
        return Response(status_code=499)  # the client is gone; nobody reads this
    totals.add(model.uid, completions)
    return JSONResponse(reply.response(completions))


def _fitting(model: ServedModel, prompt: str, asked: int) -> list[int]:
    """The prompt's tokens (submitted as such: tokenized once), if the `asked` max_tokens fit after
    them. As OpenAI's API does, a reply asked longer than the context leaves is refused (400
    context_length_exceeded), not cut short by the context; left out, the reply takes Hearth's default
    length and ends, at the latest, where the context does."""
    tokens = model.engine.tokenize(prompt)
    if len(tokens) + asked > model.engine.n_ctx:
        raise ContextOverflow(len(tokens), model.engine.n_ctx, asked)
    return tokens


def _submit(
    model: ServedModel,
    prompt: str | list,
    sampling: SamplingParams,
    n: int,
    session: str | None,
    follow: str | None = None,
    user: str | None = None,
    asked: int | None = None,
) -> list[Stream]:
    """n generations of one prompt. With a seed, choice i uses seed + i (so the choices differ yet
    are reproducible); only the first keeps the session's slot (and so gets the follow-up `follow`).
    `user` (OpenAI's end-user id): the engine shares cached prefixes only among one user's requests.
    `asked`: the max_tokens the client asked for, if it did (see `_fitting`)."""
    if asked is not None and isinstance(prompt, str) and model.template is not None:
        prompt = _fitting(model, prompt, asked)
    streams: list[Stream] = []
    try:
        for i in range(n):
            seeded = sampling.for_choice(i)
            # Without a session the engine ignores `followed_by`.
            streams.append(
                model.engine.submit(
                    prompt, seeded, session=session if i == 0 else None, followed_by=follow, user=user
                )
            )
    except BaseException:
        for stream in streams:
            stream.cancel()
        raise
    return streams
