"""The engine: one loaded model, one worker thread that owns its llama.cpp context, a queue in front.

`load_engine` returns one shared engine per model file and device. `engine.submit` tokenizes (the
vocabulary is immutable, so any thread may), refuses what cannot fit, and queues the request; the
worker thread makes every call that touches the context. This version serves one request at a time
on one cached sequence, reusing the longest common prefix with the previous request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from native.errors import ContextOverflow, EngineBusy, EngineFailed
from native.generate import Generation
from native.gguf_info import ModelInfo, inspect_gguf
from native.hardware import Device, choose_device, default_threads, n_gpu_layers_for
from native.llama import Batch, Context, Model
from native.resolve import resolve_model
from native.sampling import SamplingParams, build_sampler
from native.stream import Completion, Stream, Timings, Usage

log = logging.getLogger("hearth.engine")

DEFAULT_CTX = 4096
SEQ = 0  # the one sequence this engine keeps cached


@dataclass
class Request:
    tokens: list[int]
    sampling: SamplingParams
    session: str | None
    stream: Stream
    submitted: float = field(default_factory=time.perf_counter)


class Engine:
    """A loaded model behind a worker thread. Use `load_engine` to get the shared instance."""

    def __init__(
        self,
        info: ModelInfo,
        device: Device,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_queue: int = 64,
    ) -> None:
        started = time.perf_counter()
        self.info = info
        self.device = device
        self.n_threads = n_threads or default_threads()
        self._model = Model(info.path, n_gpu_layers=n_gpu_layers_for(device))
        try:
            ctx_size = n_ctx or min(info.context_length or DEFAULT_CTX, DEFAULT_CTX)
            self._ctx = Context(
                self._model, n_ctx=ctx_size, n_batch=n_batch, n_seq_max=1, n_threads=self.n_threads
            )
            self._batch = Batch(self._ctx.n_batch)
        except BaseException:
            self._model.close()
            raise
        self.n_ctx = self._ctx.n_ctx
        self._cached: list[int] = []
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=max_queue)
        self._failure: str | None = None
        self._closed = False
        self._busy = False
        self._requests = 0
        self._last: Completion | None = None
        self._worker = threading.Thread(target=self._run, name=f"hearth-engine-{info.path.name}", daemon=True)
        self._worker.start()
        log.info(
            "loaded model %s (%s, %s, %s) on %s with %d threads, context %d, in %.2f s",
            info.path.name,
            info.architecture,
            info.quantization,
            _mib(info.file_size),
            device,
            self.n_threads,
            self.n_ctx,
            time.perf_counter() - started,
        )

    # -- public API ---------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.info.path.stem

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self._model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self._model.detokenize(tokens)

    def submit(
        self, prompt: str | list[int], sampling: SamplingParams | None = None, session: str | None = None
    ) -> Stream:
        """Queue a generation and return its Stream at once. Raises before any work is done when the
        prompt cannot fit (ContextOverflow), the queue is full (EngineBusy) or the engine is gone."""
        self._check_alive()
        sampling = sampling or SamplingParams()
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise ValueError("the prompt is empty: give at least one token")
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx, sampling.max_new_tokens)
        if isinstance(prompt, str):
            log.debug("prompt for session %s: %r", session, prompt)
        request = Request(tokens, sampling, session, Stream())
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise EngineBusy(
                f"the engine has {self._queue.maxsize} requests waiting; retry in a moment"
            ) from None
        return request.stream

    def stats(self) -> dict:
        """Cheap counters for dashboards: no call into llama.cpp."""
        last = self._last
        return {
            "model": self.model_name,
            "device": str(self.device),
            "threads": self.n_threads,
            "context_size": self.n_ctx,
            "slots_total": 1,
            "slots_in_use": int(self._busy),
            "queue_depth": self._queue.qsize(),
            "cached_tokens": [len(self._cached)],
            "requests_total": self._requests,
            "prefill_tokens_per_s": last.timings.prefill_tokens_per_s if last else 0.0,
            "decode_tokens_per_s": last.timings.decode_tokens_per_s if last else 0.0,
        }

    def close(self) -> None:
        """Stop the worker, fail what is still queued, free the native handles. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _registry_forget(self)
        self._queue.put(None)
        self._worker.join()

    # -- worker thread ------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._failure:
            raise EngineFailed(f"the engine for {self.model_name} failed: {self._failure}; load it again")
        if self._closed:
            raise EngineFailed(f"the engine for {self.model_name} was closed")

    def _run(self) -> None:
        try:
            while (request := self._queue.get()) is not None:
                self._busy = True
                self._serve(request)
                self._busy = False
        except BaseException as exc:  # the worker must never die silently: everyone waiting is told
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("engine worker died")
        finally:
            self._drain(self._failure or "the engine was closed")
            self._batch.close()
            self._model.close()

    def _drain(self, reason: str) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.stream._finish(_failed(request, reason))

    def _serve(self, request: Request) -> None:
        self._requests += 1
        started = time.perf_counter()
        if request.stream.cancelled:
            request.stream._finish(_empty(request, "cancelled"))
            return
        sampler = build_sampler(request.sampling, self._model)
        try:
            generation = Generation(self._model, self._ctx, self._batch, sampler, request, SEQ)
            completion = generation.run(self._cached, started)
        except Exception as exc:
            log.exception("generation failed")
            self._cached = []
            self._ctx.forget(SEQ)
            completion = _failed(request, f"{type(exc).__name__}: {exc}")
        finally:
            sampler.close()
        self._last = completion
        log.info(
            "session=%s prompt=%d cached=%d completion=%d finish=%s ttft=%.3fs prefill=%.0f tok/s "
            "decode=%.1f tok/s",
            request.session,
            completion.usage.prompt_tokens,
            completion.usage.cached_tokens,
            completion.usage.completion_tokens,
            completion.finish_reason,
            completion.timings.time_to_first_token,
            completion.timings.prefill_tokens_per_s,
            completion.timings.decode_tokens_per_s,
        )
        request.stream._finish(completion)


def _empty(request: Request, finish: str, error: str | None = None) -> Completion:
    return Completion(
        text="",
        finish_reason=finish,  # type: ignore[arg-type]
        usage=Usage(len(request.tokens), 0, 0),
        timings=Timings(0.0, 0.0, 0.0),
        error=error,
    )


def _failed(request: Request, reason: str) -> Completion:
    return _empty(request, "error", reason)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


# -- the shared engines -----------------------------------------------------------------------------

_registry: dict[tuple[Path, str], Engine] = {}
_registry_lock = threading.Lock()
_loads = 0


def load_engine(
    model: str | Path | None = None,
    device: str | Device = "auto",
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    models_dir: str | Path | None = None,
) -> Engine:
    """The shared engine for `model` on `device`, loading it on first use only.

    `model` is a path to a .gguf file, a folder holding one, a name in models/, a catalog name, or
    None for the default model. The file's header is validated before llama.cpp sees it.
    """
    path = resolve_model(model, models_dir=models_dir).resolve()
    chosen = choose_device(device)
    key = (path, str(chosen))
    global _loads
    with _registry_lock:  # loading twice at once would hold two copies of the weights
        engine = _registry.get(key)
        if engine is not None and not engine._failure:
            if n_ctx and n_ctx != engine.n_ctx:
                log.warning(
                    "reusing the loaded %s with context %d (asked for %d)", path.name, engine.n_ctx, n_ctx
                )
            return engine
        info = inspect_gguf(path)
        engine = Engine(info, chosen, n_ctx=n_ctx, n_threads=n_threads)
        _registry[key] = engine
        _loads += 1
        return engine


def model_loads() -> int:
    """How many times this process has loaded model weights (benchmarks and tests count them)."""
    return _loads


def _registry_forget(engine: Engine) -> None:
    with _registry_lock:
        for key, value in list(_registry.items()):
            if value is engine:
                del _registry[key]
