"""A Python client for Hearth's REST server (or any OpenAI-compatible one), shaped like Xinference's.

```python
from llm.client import Client
client = Client("http://127.0.0.1:8000")
model = client.get_model("default")
model.chat([{"role": "user", "content": "What is the largest animal?"}],
           generate_config={"max_tokens": 64, "temperature": 0.7})
for chunk in model.generate("Once upon a time", generate_config={"stream": True}):
    print(chunk["choices"][0]["text"], end="")
```
Replies are OpenAI's dicts (`chat.completion`, `text_completion` and their chunks), with real token
counts. `AsyncClient` is the same with `await` (and `async for` over a stream). Failures raise
`APIError` (a RuntimeError, as Xinference's client raises) carrying the server's status and error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from native.remote_wire import DONE, sse_data

__all__ = ["APIError", "AsyncClient", "AsyncModelHandle", "Client", "ModelHandle"]


class APIError(RuntimeError):
    """The server refused or failed a request; `status_code` and `code` say how (OpenAI's fields)."""

    def __init__(self, status_code: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(f"{status_code}: {message}")
        self.status_code, self.message, self.code, self.param = status_code, message, code, param


# -- what sync and async share: URLs, bodies, and reading replies ---------------------------------


def _root(url: str) -> str:
    """The server's root: Xinference's clients take it without /v1, OpenAI's with; both work here."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _body(uid: str, key: str, value: Any, generate_config: dict | None) -> dict:
    """The request: the model, the messages or prompt, and generate_config's OpenAI fields as they are."""
    return {**(generate_config or {}), "model": uid, key: value}


def _error(response: httpx.Response) -> APIError:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    return APIError(
        response.status_code, error.get("message") or response.text, error.get("code"), error.get("param")
    )


def _json(response: httpx.Response) -> Any:
    if response.is_error:
        raise _error(response)
    return response.json()


def _chunk(line: str) -> dict | object | None:
    """One streamed chunk, DONE at the end, None for lines that carry none; raises on an error event."""
    try:
        return sse_data(line)
    except Exception as exc:  # an error event: the server failed mid-stream
        raise APIError(500, str(exc)) from None


def _models(listing: dict) -> dict[str, dict]:
    return {entry["id"]: entry for entry in listing.get("data", [])}


def _check_uid(uid: str, models: dict[str, dict]) -> None:
    if uid not in models:
        raise APIError(
            404, f"the server has no model {uid!r}; it serves: {', '.join(models)}", "model_not_found"
        )


# -- sync ------------------------------------------------------------------------------------------


class Client:
    """The server at `base_url` (e.g. http://127.0.0.1:8000), with `api_key` if it requires one."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 600.0) -> None:
        self._http = httpx.Client(base_url=_root(base_url), headers=_headers(api_key), timeout=timeout)

    def list_models(self) -> dict[str, dict]:
        """UID -> description of every model the server serves."""
        return _models(_json(self._http.get("/v1/models")))

    def get_model(self, model_uid: str) -> ModelHandle:
        """A handle on one served model; raises APIError (404) if the server has no such model."""
        _check_uid(model_uid, self.list_models())
        return ModelHandle(self, model_uid)

    def _post(self, path: str, body: dict) -> dict | Iterator[dict]:
        if not body.get("stream"):
            return _json(self._http.post(path, json=body))
        response = self._http.send(self._http.build_request("POST", path, json=body), stream=True)
        if response.is_error:
            response.read()
            response.close()
            raise _error(response)
        return self._chunks(response)

    @staticmethod
    def _chunks(response: httpx.Response) -> Iterator[dict]:
        try:
            for line in response.iter_lines():
                chunk = _chunk(line)
                if chunk is DONE:
                    return
                if chunk is not None:
                    yield chunk  # type: ignore[misc]
        finally:
            response.close()  # also when the caller stops early: the server then cancels the generation

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModelHandle:
    """One served model: `chat` (messages) and `generate` (a prompt continued as is)."""

    def __init__(self, client: Client, uid: str) -> None:
        self._client, self.model_uid = client, uid

    def chat(self, messages: list[dict], generate_config: dict | None = None) -> dict | Iterator[dict]:
        """A `chat.completion`, or with `"stream": True` an iterator of `chat.completion.chunk`s."""
        return self._client._post(
            "/v1/chat/completions", _body(self.model_uid, "messages", messages, generate_config)
        )

    def generate(self, prompt: str, generate_config: dict | None = None) -> dict | Iterator[dict]:
        """A `text_completion`, or with `"stream": True` an iterator of its chunks."""
        return self._client._post("/v1/completions", _body(self.model_uid, "prompt", prompt, generate_config))


# -- async -----------------------------------------------------------------------------------------


class AsyncClient:
    """`Client` for asyncio code: the same methods, awaited."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 600.0) -> None:
        self._http = httpx.AsyncClient(base_url=_root(base_url), headers=_headers(api_key), timeout=timeout)

    async def list_models(self) -> dict[str, dict]:
        return _models(_json(await self._http.get("/v1/models")))

    async def get_model(self, model_uid: str) -> AsyncModelHandle:
        _check_uid(model_uid, await self.list_models())
        return AsyncModelHandle(self, model_uid)

    async def _post(self, path: str, body: dict) -> dict | AsyncIterator[dict]:
        if not body.get("stream"):
            return _json(await self._http.post(path, json=body))
        response = await self._http.send(self._http.build_request("POST", path, json=body), stream=True)
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise _error(response)
        return self._chunks(response)

    @staticmethod
    async def _chunks(response: httpx.Response) -> AsyncIterator[dict]:
        try:
            async for line in response.aiter_lines():
                chunk = _chunk(line)
                if chunk is DONE:
                    return
                if chunk is not None:
                    yield chunk  # type: ignore[misc]
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncModelHandle:
    """`ModelHandle` for asyncio code: `await model.chat(...)`; a stream is then iterated with `async for`."""

    def __init__(self, client: AsyncClient, uid: str) -> None:
        self._client, self.model_uid = client, uid

    async def chat(
        self, messages: list[dict], generate_config: dict | None = None
    ) -> dict | AsyncIterator[dict]:
        return await self._client._post(
            "/v1/chat/completions", _body(self.model_uid, "messages", messages, generate_config)
        )

    async def generate(self, prompt: str, generate_config: dict | None = None) -> dict | AsyncIterator[dict]:
        return await self._client._post(
            "/v1/completions", _body(self.model_uid, "prompt", prompt, generate_config)
        )
