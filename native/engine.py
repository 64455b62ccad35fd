"""The engine: one loaded model, served to many sessions at once by one scheduler thread.

`load_engine` returns one shared engine per model file and device. `engine.submit` tokenizes (the
vocabulary is immutable, so any thread may), refuses what cannot fit, and queues the request; the
scheduler thread (native/scheduler.py) makes every call that touches the context.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from pathlib import Path

from native.errors import BackendUnavailable, ContextOverflow, EngineBusy, EngineFailed
from native.gguf_info import ModelInfo, inspect_gguf
from native.hardware import Device, choose_device, default_threads, total_memory
from native.kv_tiers import CacheConfig, forget_session_files, owner_key, session_key
from native.llama import Context, Model, SamplerChain
from native.offload import GpuConfig, gpu_config, gpu_parallel, plan_offload
from native.prefix_cache import PrefixCache
from native.remote import RemoteEngine, connect, is_remote
from native.resolve import resolve_model
from native.sampling import SamplingParams, check_grammar
from native.scheduler import Scheduler
from native.sequence import Request
from native.stream import Stream

log = logging.getLogger("hearth.engine")

DEFAULT_CTX = 4096
MAX_DEFAULT_PARALLEL = 8
MAX_FOLLOW_UP = 32  # tokens: a turn separator is a handful; anything longer is no separator


def default_parallel() -> int:
    """Slots on the CPU when none are asked for: one per 2 GiB of memory, from 1 to 8."""
    memory = total_memory() or 0
    return max(1, min(MAX_DEFAULT_PARALLEL, memory // 2**31))


class Engine:
    """A loaded model behind a scheduler thread. Use `load_engine` to get the shared instance.
    Implements `native.protocol.EngineProtocol`.

    `n_ctx` is the context of one session (slot); the context allocated is `n_ctx * parallel`. On a
    GPU, `gpu` (default: `HEARTH_GPU_LAYERS`) says how many layers go there, and the slots default to
    what the GPU's free memory holds (native/offload.py).
    """

    renders_chat = False
    """Chat models render the template and submit prompt text (or token ids)."""
    n_ctx: int
    """Each session's context in tokens."""

    def __init__(
        self,
        info: ModelInfo,
        device: Device,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        parallel: int | None = None,
        n_batch: int = 512,
        max_queue: int = 64,
        cache: CacheConfig | None = None,
        gpu: GpuConfig | None = None,
    ) -> None:
        started = time.perf_counter()
        self.info = info
        self.device = device
        self.n_threads = n_threads or default_threads()
        self.offload = plan_offload(device, info, gpu or gpu_config())
        per_slot = n_ctx or min(info.context_length or DEFAULT_CTX, DEFAULT_CTX)
        self._model = Model(info.path, **self.offload.model_params())
        try:
            # On a GPU the slots are sized after the weights are there: what is free then is the cache's.
            self.parallel = parallel or self._default_parallel(per_slot)
            self._ctx = Context(
                self._model,
                n_ctx=per_slot * self.parallel,
                n_batch=n_batch,
                n_seq_max=self.parallel,
                n_threads=self.n_threads,
            )
        except BaseException:
            self._model.close()
            raise
        self.n_ctx = self._ctx.n_ctx_seq
        self.cache_config = cache or CacheConfig()
        n_swa = info.sliding_window or 0
        # A saved state fits only a context of the same shape: its parameters name the disk files.
        shape = f"n_ctx_seq={self.n_ctx};n_swa={n_swa};swa_full=0;kv=f16;n_batch={n_batch}"
        prefix_cache = PrefixCache(self._ctx, n_swa, self.cache_config, info.path, shape)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._scheduler = Scheduler(
            self._model,
            self._ctx,
            self.parallel,
            self._queue,
            name=self.model_name,
            n_swa=n_swa,
            cache=prefix_cache,
        )
        self._failure: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"hearth-{info.path.name}", daemon=True)
        self._thread.start()
        log.info(
            "loaded model %s (%s, %s, %s) on %s with %d threads, %d slots of %d tokens, in %.2f s",
            info.path.name,
            info.architecture,
            info.quantization,
            f"{info.file_size / 2**20:.0f} MiB",
            f"{device} ({'/'.join(map(str, self._model.offloaded))} layers)" if device.is_gpu else device,
            self.n_threads,
            self.parallel,
            self.n_ctx,
            time.perf_counter() - started,
        )

    def _default_parallel(self, n_ctx: int) -> int:
        if not self.device.is_gpu:
            return default_parallel()
        slots = gpu_parallel(self.info, n_ctx, self.offload)
        if slots is None:
            log.warning(
                "%s cannot say how much memory it has free (or %s does not give its cache's shape): "
                "%d slots; HEARTH_PARALLEL sets them",
                self.device,
                self.info.path.name,
                MAX_DEFAULT_PARALLEL,
            )
            return MAX_DEFAULT_PARALLEL
        return slots

    # -- public API ---------------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.info.path.stem

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self._model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self._model.detokenize(tokens)

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token's text (a piece of a UTF-8 character, for some)."""
        return self._model.token_bytes(token)

    @property
    def eos_token_id(self) -> int:
        """The model's end-of-sequence token."""
        return self._model.eos

    @property
    def vocab_size(self) -> int:
        return self._model.n_vocab

    def is_end_token(self, token: int) -> bool:
        """Whether `token` ends a generation (end of sequence, of turn, ...)."""
        return self._model.is_eog(token)

    def submit(
        self,
        prompt: str | list[int],
        sampling: SamplingParams | None = None,
        session: str | None = None,
        *,
        followed_by: str | None = None,
        user: str | None = None,
    ) -> Stream:
        """Queue a generation and return its Stream at once. Raises before any work is done when the
        prompt cannot fit a session's context (ContextOverflow), the queue is full (EngineBusy) or the
        engine is gone (EngineFailed). `session` keeps a conversation's cache in one slot, and on disk
        once it has been idle a while (found again after a restart).

        Any request, with a session or not, reuses the longest prefix cached anywhere (a slot, the
        RAM tier, the disk tier) by `user`'s requests: one user's cache never serves another's.

        `followed_by`: the text the session's next prompt will carry right after this reply (a chat
        template's turn separator, `prompts.turn_separator`). When the reply ends at its end-of-turn
        token or its length and the session then stays idle a moment, the engine computes that text
        into the session's cache, so the next turn's time to first token is shorter. A next prompt
        that does not carry it only cuts it off again."""
        self._check_alive()
        sampling = sampling or SamplingParams()
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise ValueError("the prompt is empty: give at least one token")
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx, sampling.max_new_tokens)
        if sampling.grammar:
            check_grammar(sampling.grammar, self._model)
        if isinstance(prompt, str):
            log.debug("prompt for session %s: %r", session, prompt)
        log.debug("sampling for session %s: %r", session, sampling)
        follow = self.tokenize(followed_by, add_special=False) if followed_by and session is not None else []
        if len(follow) > MAX_FOLLOW_UP:
            raise ValueError(
                f"followed_by is {len(follow)} tokens: a turn separator is at most {MAX_FOLLOW_UP}"
            )
        request = Request(tokens, sampling, session, Stream(), user=user, followed_by=follow)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise EngineBusy(
                f"the engine has {self._queue.maxsize} requests waiting; retry in a moment"
            ) from None
        return request.stream

    def stats(self) -> dict:
        """Cheap figures for dashboards, read without calling into llama.cpp."""
        s = self._scheduler
        return {
            "model": self.model_name,
            "device": str(self.device),
            "gpu_layers": self._model.offloaded[0],
            "threads": self.n_threads,
            "context_size": self.n_ctx,
            "slots_total": self.parallel,
            "slots_in_use": len(s.active),
            "queue_depth": self._queue.qsize() + len(s.waiting),
            "cached_tokens": [len(slot.tokens) for slot in s.slots.slots],
            "requests_total": s.requests,
            "prefill_tokens_per_s": round(s.prefill_rate, 1),
            "decode_tokens_per_s": round(s.decode_rate, 1),
            "steps_total": s.steps,
            "step_seconds_total": round(s.step_seconds, 3),
            "llama_decode_seconds_total": round(s.decode_seconds, 3),
            "cache_swaps_total": s.swaps,
            "follow_ups_total": s.follow_ups_done,
            "samplers_live": SamplerChain.live,
            "kv_cache_bytes": self._ctx.kv_cache_bytes
            or (self.info.kv_bytes_per_token or 0) * self.n_ctx * self.parallel,
            "cache": s.cache.stats(),
        }

    def forget_session(self, session: str, user: str | None = None) -> None:
        """Drop `session`'s cache from every tier, its disk files included (its chat thread was
        deleted). Returns once done."""
        if not self._on_scheduler(lambda s: s.cache.forget_session(session, user, s.slots.slots)):
            forget_session_files(self.cache_config.cache_dir(), session_key(owner_key(user), session))

    def save_sessions(self) -> None:
        """Write every idle session's cache to disk now, not when its idle time runs out: what a
        server does when it is told to stop (uvicorn re-raises SIGTERM after its shutdown, so no
        exit handler runs after it). The engine keeps serving."""
        self._on_scheduler(lambda s: s.cache.write_due(s.slots.slots, everything=True))

    def _on_scheduler(self, work) -> bool:
        """Run `work(scheduler)` on the scheduler thread, between steps, and wait for it; False when
        the engine no longer runs."""
        if self._closed or self._failure or not self._thread.is_alive():
            return False
        done = threading.Event()

        def control() -> None:
            try:
                work(self._scheduler)
            finally:
                done.set()

        self._queue.put(control)
        while not done.wait(0.5):
            if not self._thread.is_alive():  # it stopped before it got there
                return False
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the scheduler, fail what is still queued, free the native handles. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _registry_forget(self)
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    # -- the scheduler thread -----------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._failure:
            raise EngineFailed(f"the engine for {self.model_name} failed: {self._failure}; load it again")
        if self._closed:
            raise EngineFailed(f"the engine for {self.model_name} was closed")

    def _run(self) -> None:
        failure = self._scheduler.run()
        self._failure = failure
        self._scheduler.fail_everything(failure or "the engine was closed")
        self._model.close()


# -- the shared engines -----------------------------------------------------------------------------

BACKENDS = ("llama.cpp", "torch")
BACKEND_ENV = "HEARTH_BACKEND"

_registry: dict[tuple[Path, str, int | str], Engine] = {}
_registry_lock = threading.Lock()
_loads = 0


def load_engine(
    model: str | Path | None = None,
    device: str | Device = "auto",
    *,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    parallel: int | None = None,
    models_dir: str | Path | None = None,
    api_key: str | None = None,
    gpu_layers: int | str | None = None,
    backend: str | None = None,
) -> Engine | RemoteEngine:
    """The shared engine for `model` on `device`, loading it on first use only.

    `model` is a path to a .gguf file, a folder holding one, a name in models/, a catalog name, or
    None for the default model. The file's header is validated before llama.cpp sees it. `n_ctx` is
    each session's context, `parallel` the number of sessions served at once (slots). On a GPU
    `gpu_layers` (else `HEARTH_GPU_LAYERS`, else every layer) go there; a model is shared per file,
    device and layer count.

    `model` may also be the URL of an OpenAI-compatible server (`http://host:port/v1`, optionally
    `#MODEL_UID`): the model then runs there (native/remote.py), `api_key` (else `HEARTH_API_KEY`)
    authenticates, and the loading options are the server's own business.

    `backend`: "llama.cpp" (the default) or "torch" (PyTorch and transformers, native/torch_engine.py:
    GGUF files transformers can dequantize, and Hugging Face model folders); None reads
    `HEARTH_BACKEND`. A model spec written `torch:MODEL` (or `llama.cpp:MODEL`) names its backend too,
    for the places where only a string travels (the app's model picker).
    """
    if is_remote(model):
        return connect(str(model), api_key)
    backend, model = split_backend(model, backend)
    if backend == "torch":
        return _load_torch(
            model, device, n_ctx=n_ctx, n_threads=n_threads, parallel=parallel, models_dir=models_dir
        )
    path = resolve_model(model, models_dir=models_dir).resolve()
    chosen = choose_device(device)
    gpu = gpu_config(gpu_layers)
    key = (path, str(chosen), gpu.gpu_layers)
    global _loads
    with _registry_lock:  # loading twice at once would hold two copies of the weights
        engine = _registry.get(key)
        if engine is not None and not engine._failure:
            if (n_ctx and n_ctx != engine.n_ctx) or (parallel and parallel != engine.parallel):
                log.warning(
                    "reusing the loaded %s (%d slots of %d tokens)", path.name, engine.parallel, engine.n_ctx
                )
            return engine
        info = inspect_gguf(path)
        engine = Engine(info, chosen, n_ctx=n_ctx, n_threads=n_threads, parallel=parallel, gpu=gpu)
        _registry[key] = engine
        _loads += 1
        return engine


def split_backend(model: str | Path | None, backend: str | None = None) -> tuple[str, str | Path | None]:
    """(backend, model) from `load_engine`'s arguments: a `torch:` or `llama.cpp:` prefix, else
    `backend`, else `HEARTH_BACKEND`, else llama.cpp. Raises BackendUnavailable for a name that is no
    backend."""
    for name in BACKENDS:
        if isinstance(model, str) and model.startswith(f"{name}:"):
            model, backend = model.removeprefix(f"{name}:") or None, name
    chosen = (backend or os.environ.get(BACKEND_ENV) or "llama.cpp").strip().lower()
    if chosen in ("llama", "llamacpp", "llama-cpp"):
        chosen = "llama.cpp"
    if chosen not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {chosen!r}; the backends are: {', '.join(BACKENDS)}")
    return chosen, model


def with_backend(model: str | None, backend: str | None) -> str | None:
    """`model` as one string that also names `backend` (`torch:MODEL`), for callers that pass only a
    model spec along (NanoLLM.from_pretrained, the app's picker). None keeps `model` as it is."""
    if backend is None:
        return model
    chosen, _ = split_backend(None, backend)
    return f"{chosen}:{model or ''}"


def _load_torch(model, device, *, n_ctx, n_threads, parallel, models_dir):
    """The shared torch engine for `model` on `device` (torch_engine imports torch: only now)."""
    from native.torch_load import find_source, require_torch, torch_device

    require_torch()
    from native.torch_engine import TorchEngine

    source = find_source(model, models_dir)
    key = (source.path, f"torch:{torch_device(device)}", "all")
    global _loads
    with _registry_lock:
        engine = _registry.get(key)
        if engine is not None and not engine._failure:
            return engine
        engine = TorchEngine(source, device, n_ctx=n_ctx, n_threads=n_threads, parallel=parallel)
        _registry[key] = engine
        _loads += 1
        return engine


@atexit.register
def close_engines() -> None:
    """Close every loaded engine: each stops cleanly and so writes its sessions' caches to disk. Runs
    at a normal exit and after Ctrl-C; servers call `save_sessions` when they shut down, since
    uvicorn ends the process with the SIGTERM it caught, and exit handlers do not run then."""
    for engine in loaded_engines():
        engine.close()


def save_sessions() -> None:
    """Every loaded engine writes its idle sessions' caches to disk now, and keeps serving."""
    for engine in loaded_engines():
        engine.save_sessions()


def forget_session(session: str, user: str | None = None) -> None:
    """Drop `session`'s KV cache everywhere: from every loaded engine and from the disk tier's files of
    any model (a deleted chat thread's cache must not outlive it)."""
    for engine in loaded_engines():
        engine.forget_session(session, user)
    forget_session_files(CacheConfig().cache_dir(), session_key(owner_key(user), session))


def model_loads() -> int:
    """How many times this process has loaded model weights (benchmarks and tests count them)."""
    return _loads


def loaded_engines() -> list[Engine]:
    """The engines `load_engine` holds now. `engine.close()` unloads one: it leaves this list, its
    weights and KV cache are freed, and the next `load_engine` of that model loads it again."""
    with _registry_lock:
        return list(_registry.values())


def _registry_forget(engine: Engine) -> None:
    with _registry_lock:
        for key, value in list(_registry.items()):
            if value is engine:
                del _registry[key]
