"""Every error the server returns, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Bad input is a 4xx that names the field and the fix; only a bug of ours is a 500. OpenAI clients
raise their own exception types from the status (openai.BadRequestError, NotFoundError, ...).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

import prompts
from native.errors import (
    ContextOverflow,
    EngineBusy,
    EngineFailed,
    HearthError,
    InvalidGrammar,
    ModelNotFound,
)

log = logging.getLogger("hearth.rest")

RETRY_AFTER_S = 1  # a full queue drains in about one generation's time

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}


class APIError(Exception):
    """An error response: raise it anywhere in a request and the client gets it as is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_native(exc: Exception, param: str | None = None) -> APIError:
    """The response for what the engine (or the template renderer) refused."""
    if isinstance(exc, ContextOverflow):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, InvalidGrammar):
        return APIError(400, str(exc), param="response_format", code="invalid_grammar")
    if isinstance(exc, prompts.TemplateError):
        return APIError(400, str(exc), param="messages", code="invalid_messages")
    if isinstance(exc, EngineBusy):
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return APIError(503, str(exc), code="engine_busy", type="server_busy", headers=headers)
    if isinstance(exc, ModelNotFound):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, EngineFailed):
        return APIError(503, str(exc), code="engine_failed", type="server_error")
    if isinstance(exc, HearthError) and isinstance(exc, ValueError):
        return APIError(400, str(exc), param=param)
    return APIError(500, f"internal error: {type(exc).__name__}", type="server_error")


def validation_error(
    exc: ValidationError | RequestValidationError, names: dict[str, str] | None = None
) -> APIError:
    """A 400 naming the first bad field (with OpenAI's name for it, when `names` maps ours to theirs)."""
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body" and not _union_tag(str(part))]
    if first.get("type") == "json_invalid":
        return APIError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}")
    if not loc:
        return APIError(400, f"send a JSON object (Content-Type: application/json): {first['msg']}")
    param = (names or {}).get(loc[0], loc[0]) + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    got = f" (got {first['input']!r})" if first.get("type") not in ("missing", "extra_forbidden") else ""
    return APIError(400, f"{param}: {first['msg']}{got}", param=param)


def _union_tag(part: str) -> bool:
    """pydantic puts the member of a union it tried into the location ("str", "list[TextPart]"):
    not a field the client wrote."""
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none"}


def install(app: FastAPI) -> None:
    """Route every failure through APIError: none leaves as FastAPI's default 422 or a bare 500."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {exc.detail}"
        if exc.status_code == 404:
            message += "; the API is under /v1 (see /docs)"
        return APIError(exc.status_code, message, headers=exc.headers).response()

    @app.exception_handler(HearthError)
    async def refused(request: Request, exc: HearthError) -> JSONResponse:
        return from_native(exc).response()

    @app.exception_handler(prompts.TemplateError)
    async def unrenderable(request: Request, exc: prompts.TemplateError) -> JSONResponse:
        return from_native(exc).response()

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return from_native(exc).response()
