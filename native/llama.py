"""Owners of llama.cpp handles: one class per handle, each freeing what it owns exactly once.

Children close before parents (a context before its model), `close()` may run any number of times,
and no raw pointer leaves `native/`. Return codes become `native.errors` exceptions that name the fix.
Shape after llama-cpp-python's `_internals.py`, which keeps the C declarations beside each call.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp as C

from native.errors import ModelLoadFailed, StepFailed

log = logging.getLogger("hearth.native")

_backend_lock = threading.Lock()
_backend_ready = False
_log_callback = None  # llama.cpp keeps the C pointer: the Python object must outlive every call


@dataclass
class _Said:
    """What llama.cpp logged about one model load or context creation."""

    kv_mib: list[float] = field(default_factory=list)
    """The KV buffers' sizes (MiB), one line per buffer (per device)."""
    offloaded: tuple[int, int] | None = None
    """(layers on the GPU, the model's layers), from "offloaded 31/31 layers to GPU"."""


class _LoadLog:
    """Figures llama.cpp gives only in its log while it loads a model or creates a context.

    llama.cpp has no API for them: `llama_state_get_size` counts the cells a state holds, not what
    was allocated, and nothing else reports the cache's size. Its log line "KV buffer size = X MiB"
    is the only figure that knows a sliding-window cache (Gemma 3) is smaller than n_ctx cells of
    every layer, on any architecture and device; "offloaded K/N layers to GPU" is the only word on
    what a GPU got. llama.cpp's log callback is one per process, so loads and context creations take
    turns (`collecting`) to tell whose lines they are."""

    _KV = re.compile(r"KV buffer size\s*=\s*([0-9.]+) MiB")
    _OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: _Said | None = None  # while a load or context creation runs

    @contextlib.contextmanager
    def collecting(self) -> Iterator[_Said]:
        """Within this block, what llama.cpp logs lands in the `_Said` it yields."""
        with self._lock:
            self._said = said = _Said()
            try:
                yield said
            finally:
                self._said = None

    def read(self, message: str) -> None:
        """Called by the log forwarder for every line llama.cpp logs."""
        said = self._said
        if said is None:
            return
        if found := self._KV.search(message):
            said.kv_mib.append(float(found[1]))
        elif found := self._OFFLOADED.search(message):
            said.offloaded = (int(found[1]), int(found[2]))


_load_log = _LoadLog()


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log into Python logging."""
    global _backend_ready, _log_callback
    with _backend_lock:
        if _backend_ready:
            return
        C.llama_backend_init()

        @C.llama_log_callback
        def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            # llama.cpp is chatty at load time; keep its lines at debug so our own logs stay readable.
            message = text.decode("utf-8", errors="replace").rstrip()
            _load_log.read(message)
            if message:
                log.debug("llama.cpp: %s", message)

        _log_callback = forward
        C.llama_log_set(_log_callback, ctypes.c_void_p(0))
        _backend_ready = True


def state_buffer(size: int) -> ctypes.Array:
    """A zeroed buffer of `size` bytes that ctypes can hand to llama.cpp, made without touching its
    pages. A ctypes array, and a bytearray too, memset their memory while holding the GIL: tens of
    milliseconds for a long session's state, which stall every other thread (an app's event loop
    among them). An anonymous mapping's pages come zeroed from the kernel on first write, and that
    write is llama.cpp's or a file read's, both outside the GIL."""
    return (ctypes.c_uint8 * size).from_buffer(mmap.mmap(-1, max(size, 1)))


class Model:
    """The weights and vocabulary (`llama_model`), shared by every context built on them."""

    def __init__(
        self,
        path: Path,
        *,
        n_gpu_layers: int = 0,
        split_mode: int = C.LLAMA_SPLIT_MODE_LAYER,
        main_gpu: int = 0,
    ) -> None:
        """`n_gpu_layers`, `split_mode`, `main_gpu`: llama.cpp's own (native/offload.py plans them)."""
        init_backend()
        params = C.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.split_mode = split_mode
        params.main_gpu = main_gpu
        with _load_log.collecting() as said:
            handle = C.llama_model_load_from_file(str(path).encode(), params)
        self.offloaded = said.offloaded or (0, 0)
        """(layers on the GPU, the model's layers) as llama.cpp reported them; (0, 0) where it says
        nothing (a build without GPU offload)."""
        if not handle:
            raise ModelLoadFailed(
                f"llama.cpp could not load {path}: the file passed GGUF validation, so this build may not "
                "support one of its tensor types; run `python -m native` with this model for details"
            )
        self._handle = handle
        self.vocab = C.llama_model_get_vocab(handle)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.eos = C.llama_vocab_eos(self.vocab)
        self.n_ctx_train = C.llama_model_n_ctx_train(handle)
        self._children: list[Context] = []
        self._pieces: dict[tuple[int, bool], bytes] = {}

    @property
    def handle(self):
        if self._handle is None:
            raise ModelLoadFailed("the model was closed")
        return self._handle

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`. Reads only the immutable vocabulary, so any thread may call it."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (C.llama_token * capacity)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n < 0:  # the buffer was too small; -n is the size it needs
            capacity = -n
            buf = (C.llama_token * capacity)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, parse_special)
        return list(buf[:n])

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The raw bytes of one token: possibly part of a multi-byte UTF-8 character."""
        key = (token, special)
        piece = self._pieces.get(key)
        if piece is None:  # the vocabulary never changes: each token is converted once per process
            piece = self._pieces[key] = self._token_to_piece(token, special)
        return piece

    def _token_to_piece(self, token: int, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(32)
        n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        return b"".join(self.token_bytes(t, special=special) for t in tokens).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(C.llama_vocab_is_eog(self.vocab, token))

    def adopt(self, context: Context) -> None:
        self._children.append(context)

    def close(self) -> None:
        # The native context must be freed before its model.
        for child in self._children:
            child.close()
        self._children.clear()
        if self._handle is not None:
            C.llama_model_free(self._handle)
            self._handle = None


class Context:
    """A `llama_context`: the KV cache and compute buffers. Owned by exactly one thread."""

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int,
        n_batch: int,
        n_seq_max: int,
        n_threads: int,
        swa_full: bool = False,
    ) -> None:
        self._n_vocab = model.n_vocab
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        # A sliding-window cache (Gemma 3) either holds every position (swa_full) or only the window:
        # the small one prunes what the window has passed, so rolling a sequence back past the window
        # needs the scheduler's check (`pos_min`) and a fresh prefill.
        params.swa_full = swa_full
        # One KV stream per sequence: attention then scans only a sequence's own cells, not every
        # session's, and each sequence gets n_ctx / n_seq_max positions.
        params.kv_unified = False
        # Flash attention stays llama.cpp's choice (on, on the CPU). On x86 with AVX-512 our patched
        # kernel (native/patches) gives a token the same result however it was batched, and runs a
        # chat turn's short chunk over a long history about 1.5x faster than the stock kernels. The
        # stock ones (other CPUs) pick a kernel by chunk size, and their rounding differs between
        # kernels. Without flash attention, a one-token chunk takes yet another matmul path, and the
        # greedy replies from the cache differ from uncached ones (measured: 5 tests fail).
        # Each offloaded layer's KV cache on its GPU (llama.cpp's default, stated because the slots
        # sized from GPU memory count on it, native/offload.py); nothing changes on the CPU.
        params.offload_kqv = True
        with _load_log.collecting() as said:
            handle = C.llama_init_from_model(model.handle, params)
        self.kv_cache_bytes = int(sum(said.kv_mib) * 2**20) or None
        """Bytes of the KV cache llama.cpp allocated (see `_LoadLog`); None if it logged none."""
        if not handle:
            raise ModelLoadFailed(
                f"llama.cpp could not create a context of {n_ctx} tokens: lower the context size "
                "(HEARTH_CTX_SIZE) or free memory"
            )
        self._handle = handle
        self.n_ctx = C.llama_n_ctx(handle)
        self.n_ctx_seq = C.llama_n_ctx_seq(handle)
        self.n_batch = C.llama_n_batch(handle)
        self._memory = C.llama_get_memory(handle)
        model.adopt(self)

    @property
    def handle(self):
        if self._handle is None:
            raise ModelLoadFailed("the context was closed")
        return self._handle

    def decode(self, batch: Batch) -> None:
        rc = C.llama_decode(self.handle, batch.struct)
        if rc == 1:
            raise StepFailed("llama_decode found no KV slot for the batch: the context is full")
        if rc != 0:
            raise StepFailed(f"llama_decode returned {rc}")

    def logits(self, index: int) -> bytes:
        """The raw F32 logits of the batch entry at `index` (asked for with `logits=True`), as bytes."""
        ptr = C.llama_get_logits_ith(self.handle, index)
        if not ptr:
            raise ValueError(f"no logits at batch index {index}")
        return ctypes.string_at(ptr, 4 * self._n_vocab)

    def pos_min(self, seq_id: int) -> int:
        """The smallest position the cache still holds for the sequence (-1 when it holds none)."""
        return C.llama_memory_seq_pos_min(self._memory, seq_id)

    def forget(self, seq_id: int, start: int = 0) -> bool:
        """Drop the sequence's cache from position `start` on; False when llama.cpp cannot cut there."""
        return bool(C.llama_memory_seq_rm(self._memory, seq_id, start, -1))

    def swap(self, a: int, b: int) -> None:
        """Exchange the caches of sequences `a` and `b` (either may hold nothing). Through host
        memory, so only the cells in use are copied (llama_memory_seq_cp between KV streams copies
        whole streams)."""
        saved = self.save_state(a), self.save_state(b)
        self.forget(a)
        self.forget(b)
        for data, seq_id in ((saved[0], b), (saved[1], a)):
            if data is not None and not self.restore_state(data, seq_id):
                raise StepFailed(f"llama.cpp could not restore a cache into sequence {seq_id}")

    def save_state(self, seq_id: int) -> ctypes.Array | None:
        """The sequence's KV state (its used cells only), or None when it holds none."""
        if self.pos_min(seq_id) < 0:
            return None
        size = C.llama_state_seq_get_size(self.handle, seq_id)
        data = state_buffer(size)
        if C.llama_state_seq_get_data(self.handle, data, size, seq_id) != size:
            raise StepFailed(f"llama.cpp could not save the cache of sequence {seq_id}")
        return data

    def restore_state(self, data: ctypes.Array, seq_id: int) -> bool:
        """Load a state from `save_state` into the (empty) sequence; False when llama.cpp refuses it
        (it checks the layout: another model or context shape does not load)."""
        return bool(C.llama_state_seq_set_data(self.handle, data, len(data), seq_id))

    def close(self) -> None:
        if self._handle is not None:
            C.llama_free(self._handle)
            self._handle = None


class Batch:
    """A reusable `llama_batch` of up to `capacity` tokens, refilled for every decode call."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.struct = C.llama_batch_init(capacity, 0, 1)  # each token belongs to exactly one sequence
        self._freed = False

    def __len__(self) -> int:
        return self.struct.n_tokens

    def clear(self) -> None:
        self.struct.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token of one sequence; returns its index (where its logits are, if asked for)."""
        b = self.struct
        i = b.n_tokens
        if i >= self.capacity:
            raise ValueError(f"the batch is full ({self.capacity} tokens)")
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        b.n_tokens = i + 1
        return i

    def close(self) -> None:
        if not self._freed:
            C.llama_batch_free(self.struct)
            self._freed = True


class SamplerChain:
    """One llama.cpp sampler chain (`llama_sampler`), built per request and freed with it."""

    live = 0  # chains not yet freed, process-wide: a leak shows up here

    def __init__(self) -> None:
        params = C.llama_sampler_chain_default_params()
        self._handle = C.llama_sampler_chain_init(params)
        SamplerChain.live += 1

    def add(self, sampler) -> None:
        # The chain takes ownership of each sampler it is given and frees it with itself.
        C.llama_sampler_chain_add(self._handle, sampler)

    def accept(self, token: int) -> None:
        C.llama_sampler_accept(self._handle, token)

    def sample(self, context: Context, index: int = -1) -> int:
        """Pick the next token from the logits at `index` and record it in the chain's history."""
        return C.llama_sampler_sample(self._handle, context.handle, index)

    def close(self) -> None:
        if self._handle is not None:
            C.llama_sampler_free(self._handle)
            self._handle = None
            SamplerChain.live -= 1
