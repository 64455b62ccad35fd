"""The remote engine: the engine contract over any OpenAI-compatible server (another Hearth, llama.cpp's
server, vLLM, Xinference), so the app, the LangChain classes and the Python API run unchanged against it.

`load_engine("http://host:port/v1")` (optionally `...#MODEL_UID`) returns one, shared per URL and key.
All HTTP runs with httpx on one event loop in a background thread. `submit` waits for the server's
answer to the request, so a refusal (context overflow, busy, unknown model) is raised synchronously as
the local engine raises it; the body then streams into a `Stream` as SSE chunks arrive. A cancelled
stream has its HTTP response closed within `CANCEL_POLL_S`, and the server (Hearth's, at least) then
cancels the generation.

A server renders its model's chat template itself: `renders_chat` tells the chat model to send
messages (`submit([{"role", "content"}, ...])`) instead of a prompt rendered here.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from native.errors import EngineFailed, HearthError, ModelNotFound
from native.remote_wire import DONE, ChunkReader, refusal, request_fields, sse_data
from native.sampling import SamplingParams
from native.stream import Stream

CANCEL_POLL_S = 0.05  # how often in-flight requests are checked for cancellation
API_KEY_ENV = "HEARTH_API_KEY"


def is_remote(spec: object) -> bool:
    """True for a model spec that names a server rather than a file."""
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


class RemoteEngine:
    """An engine whose model runs on an OpenAI-compatible server. Use `load_engine(URL)` to get one.
    Implements `native.protocol.EngineProtocol`."""

    renders_chat = True
    """The server applies the chat template: chat models submit messages, not rendered prompts."""
    model_name: str
    """The server's model this engine asks for."""
    n_ctx: int | None
    """The context the server reports for it, if it does."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 600.0) -> None:
        base, _, wanted = url.partition("#")
        self.url = base.rstrip("/")
        self.requests = 0
        self._closed = False
        self._inflight: dict[Stream, asyncio.Task] = {}
        self._watchdog: asyncio.Task | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hearth-remote", daemon=True)
        self._thread.start()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # No read timeout short enough to cut a long prefill: `timeout` bounds each wait for bytes.
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        try:
            self.model_name, self.n_ctx = self._call(self._pick_model(wanted or None))
        except BaseException:
            self._stop()
            raise

    # -- the engine contract ------------------------------------------------------------------------

    def submit(
        self,
        prompt: str | list[Mapping[str, Any]],
        sampling: SamplingParams | None = None,
        session: str | None = None,
        *,
        followed_by: str | None = None,
        user: str | None = None,
    ) -> Stream:
        """Send a text prompt to /completions or chat messages to /chat/completions; returns the
        Stream once the server has accepted the request. Blocks for that one round trip.
        `followed_by` and `user` are accepted for the local engine's contract: the server keeps its
        own cache, and OpenAI's `user` field carries the session (a Hearth server keys both by it)."""
        self._check_open()
        if isinstance(prompt, str) and prompt:
            path, body = "/completions", {"prompt": prompt}
        elif isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) for m in prompt):
            path, body = "/chat/completions", {"messages": [dict(m) for m in prompt]}
        else:
            # Token ids cannot travel: the server's tokenizer need not be ours.
            raise ValueError("a remote engine takes a non-empty prompt string or a list of chat messages")
        body |= request_fields(sampling or SamplingParams(), self.model_name, session)
        started = time.perf_counter()
        response = self._call(self._open(path, body))
        stream = Stream()
        self.requests += 1
        asyncio.run_coroutine_threadsafe(self._follow(response, stream, started), self._loop)
        return stream

    def forget_session(self, session: str, user: str | None = None) -> None:
        """Part of the engine contract: the server keeps (and forgets) its own caches."""

    def save_sessions(self) -> None:
        """Part of the engine contract: the server keeps its own caches."""

    def stats(self) -> dict:
        """What this client knows; the server's own figures are at its /stats (Hearth) or metrics."""
        return {
            "model": self.model_name,
            "remote": self.url,
            "context_size": self.n_ctx,
            "slots_in_use": len(self._inflight),
            "queue_depth": 0,
            "requests_total": self.requests,
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Cancel what is in flight, close the connections, stop the loop thread. Safe to call twice."""
        if not self._closed:
            _forget(self)
            self._stop()

    # -- on the loop thread -------------------------------------------------------------------------

    def _stop(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _pick_model(self, wanted: str | None) -> tuple[str, int | None]:
        """The served model to use (the one named after '#', else the first) and its context size."""
        response = await self._send(self._http.build_request("GET", "/models"))
        await response.aread()
        if response.is_error:
            raise refusal(response, self.url + "/models")
        models = {m["id"]: m for m in response.json().get("data", []) if isinstance(m, dict) and "id" in m}
        if not models:
            raise ModelNotFound(f"{self.url} serves no model")
        if wanted is not None and wanted not in models:
            raise ModelNotFound(f"{self.url} serves no model {wanted!r}; it serves: {', '.join(models)}")
        name = wanted or next(iter(models))
        return name, models[name].get("context_length")

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise EngineFailed(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None

    async def _open(self, path: str, body: dict) -> httpx.Response:
        response = await self._send(self._http.build_request("POST", path, json=body))
        if response.is_error:
            await response.aread()
            await response.aclose()
            raise refusal(response, self.url + path)
        return response

    async def _follow(self, response: httpx.Response, stream: Stream, started: float) -> None:
        """Feed the stream from the SSE body; the watchdog cancels this task if the stream is cancelled."""
        reader = ChunkReader(started)
        self._inflight[stream] = asyncio.current_task()  # type: ignore[assignment]
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch())
        try:
            async for line in response.aiter_lines():
                event = sse_data(line)
                if event is DONE:
                    break
                if event is not None:
                    stream.push(reader.feed(event))
        except asyncio.CancelledError:
            reader.finish = "cancelled"
        except (httpx.HTTPError, ValueError, HearthError) as exc:
            reader.error = f"{type(exc).__name__}: {exc}"
        finally:
            del self._inflight[stream]
            await response.aclose()
        stream.finish(reader.completion())

    async def _watch(self) -> None:
        """Cancel the requests whose streams were cancelled; runs while any request is in flight."""
        try:
            while self._inflight:
                await asyncio.sleep(CANCEL_POLL_S)
                for stream, task in list(self._inflight.items()):
                    if stream.cancelled:
                        task.cancel()
        finally:
            self._watchdog = None

    async def _shutdown(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise EngineFailed(f"the remote engine for {self.url} was closed")


# -- the shared remote engines ----------------------------------------------------------------------

_remotes: dict[tuple[str, str | None], RemoteEngine] = {}
_remotes_lock = threading.Lock()


def connect(url: str, api_key: str | None = None) -> RemoteEngine:
    """The shared remote engine for `url` with `api_key` (else `HEARTH_API_KEY`, read on every call)."""
    key = api_key or os.environ.get(API_KEY_ENV) or None
    with _remotes_lock:
        engine = _remotes.get((url, key))
        if engine is None or engine.closed:
            engine = _remotes[(url, key)] = RemoteEngine(url, key)
        return engine


def _forget(engine: RemoteEngine) -> None:
    with _remotes_lock:
        for key, value in list(_remotes.items()):
            if value is engine:
                del _remotes[key]
