"""The torch engine: the engine protocol on PyTorch and transformers, for Hugging Face model folders and
for GGUF files transformers can dequantize (native/torch_load.py).

transformers' continuous batching does the serving (`model.init_continuous_batching`): its own thread
batches every running request's next token and every admitted prompt's chunk into one forward over a
paged KV cache, and it shares cache blocks between requests whose tokens start alike ("block
sharing"). A finished request's blocks stay cached until memory is needed, so a conversation's next
turn, which repeats the previous prompt and reply, prefills only what is new: that is how sessions
keep their cache between turns, with or without a session name, at the granularity of a page
(PAGE_SIZE tokens).

This module adds what the faces expect of an engine: tokenizing and refusing what cannot fit before
anything is queued, per-request sampling (native/torch_sampling.py), text deltas that never split a
character or leak a stop string (native/detok.py), cancellation, the Completion's usage and timings,
and stats. One router thread takes the manager's outputs and feeds each request's Stream; it also
notices cancelled streams and asks the manager to drop them.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from itertools import count

from native.detok import TextAssembler
from native.errors import ContextOverflow, EngineBusy, EngineFailed
from native.gguf_info import ModelInfo
from native.hardware import default_threads
from native.sampling import SamplingParams
from native.stream import Completion, Stream, Timings, Usage
from native.torch_load import Source, load_weights, torch_device
from native.torch_owners import keep_blocks_per_owner, request_id_for
from native.torch_sampling import DEFAULTS, add_to, check_supported, request_kwargs

log = logging.getLogger("hearth.engine")

DEFAULT_CTX = 4096
PAGE_SIZE = (
    16  # tokens per cache page: the unit in which a prefix is found again (transformers' default: 256)
)
POLL_S = 0.02  # how often the router looks at cancelled streams while no output arrives
EMA = 0.2


@dataclass
class Tracked:
    """One request in flight: its stream, text assembly, counters and clock readings."""

    tokens: list[int]
    sampling: SamplingParams
    session: str | None
    stream: Stream = field(default_factory=Stream)
    submitted: float = field(default_factory=time.perf_counter)
    seen: int = 0  # tokens of the manager's output already handled
    n_gen: int = 0  # tokens generated, the end-of-generation token not counted (as llama.cpp's engine)
    first: float | None = None
    started: float | None = None
    text: TextAssembler = field(init=False)
    window: list[int] = field(default_factory=list)  # the tokens the last deltas were decoded from

    def __post_init__(self) -> None:
        self.text = TextAssembler(self.sampling.stop)


class TorchEngine:
    """A model on PyTorch behind transformers' continuous batching. Use
    `load_engine(model, backend="torch")` to get the shared instance. Implements
    `native.protocol.EngineProtocol`."""

    renders_chat = False
    """Chat models render the template and submit prompt text (or token ids)."""
    backend = "torch"
    n_ctx: int
    """Each request's context in tokens (prompt and reply)."""

    def __init__(
        self,
        source: Source,
        device: str = "auto",
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        parallel: int | None = None,
        n_batch: int = 256,
        max_queue: int = 64,
    ) -> None:
        import torch
        from transformers import ContinuousBatchingConfig, GenerationConfig

        started = time.perf_counter()
        self.info: ModelInfo = source.info
        self.device = torch_device(device)
        self.n_threads = n_threads or default_threads()
        self.parallel = parallel or 4
        if self.device == "cpu":
            # Process-wide: torch has one intra-op pool. Set when a model loads, never at import.
            torch.set_num_threads(self.n_threads)
        self.model, self.tokenizer = load_weights(source, self.device)
        limit = getattr(self.model.config, "max_position_embeddings", None) or DEFAULT_CTX
        self.n_ctx = min(n_ctx or min(limit, DEFAULT_CTX), limit)
        self._eos = _eos_ids(self.model, self.tokenizer)
        self._vocab = int(self.model.config.get_text_config().vocab_size)
        generation = GenerationConfig(
            max_new_tokens=256, eos_token_id=self._eos, pad_token_id=self._eos[0], **DEFAULTS
        )
        batching = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            # Room for `parallel` full contexts; what is left over keeps finished requests' blocks.
            num_blocks=self.parallel * math.ceil(self.n_ctx / PAGE_SIZE) + 1,
            max_batch_tokens=n_batch,
            max_requests_per_batch=self.parallel,
            allow_block_sharing=True,
            per_request_processors=True,
            max_queue_size=max_queue,
        )
        self._manager = self.model.init_continuous_batching(
            generation_config=generation, continuous_batching_config=batching
        )
        add_to(self._manager.logit_processor)
        self._manager.warmup()  # builds the batch processor and its cache now, not on the first request
        self._cached: dict[str, int] = {}
        self._requests: dict[str, Tracked] = {}
        self._count_prefix_matches()
        keep_blocks_per_owner(self._manager.batch_processor.cache)
        self._lock = threading.Lock()  # guards _requests: submit adds, the router removes
        self._ids = count()
        self._closed = False
        self._failure: str | None = None
        self.requests_total = 0
        self.prefill_rate = 0.0
        self.decode_rate = 0.0
        self._manager.start()
        self._router = threading.Thread(
            target=self._route, name=f"hearth-torch-{self.model_name}", daemon=True
        )
        self._router.start()
        log.info(
            "loaded model %s (%s, %s) with torch on %s with %d threads, %d sequences of %d tokens, in %.2f s",
            self.info.path.name,
            self.info.architecture,
            self.info.quantization,
            self.device,
            self.n_threads,
            self.parallel,
            self.n_ctx,
            time.perf_counter() - started,
        )

    # -- the engine contract ------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.info.path.stem

    @property
    def closed(self) -> bool:
        return self._closed

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return list(
            self.tokenizer(text, add_special_tokens=add_special, split_special_tokens=not parse_special)[
                "input_ids"
            ]
        )

    def detokenize(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

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
        prompt cannot fit (ContextOverflow), a sampling option is not supported here
        (UnsupportedSampling), the queue is full (EngineBusy) or the engine is gone (EngineFailed).

        Any request of `user` reuses the cache blocks of that user's earlier ones its tokens start
        with, `session` or not; never another user's (native/torch_owners.py). `followed_by` (a turn
        separator computed ahead by the llama.cpp engine) is accepted and not used: the next turn
        computes it with its prompt."""
        self._check_alive()
        sampling = sampling or SamplingParams()
        check_supported(sampling)
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise ValueError("the prompt is empty: give at least one token")
        if len(tokens) >= self.n_ctx:
            raise ContextOverflow(len(tokens), self.n_ctx, sampling.max_new_tokens)
        log.debug("sampling for session %s (user %s): %r", session, user, sampling)
        request_id = request_id_for(next(self._ids), user)
        tracked = Tracked(tokens, sampling, session)
        with self._lock:
            self._requests[request_id] = tracked
        try:
            self._manager.add_request(
                tokens,
                request_id=request_id,
                max_new_tokens=min(sampling.max_new_tokens, self.n_ctx - len(tokens)),
                streaming=True,
                eos_token_id=self._eos,
                **request_kwargs(sampling, self._vocab),
            )
        except queue.Full:
            self._untrack(request_id)
            raise EngineBusy("the torch engine's queue is full; retry in a moment") from None
        self.requests_total += 1
        return tracked.stream

    def forget_session(self, session: str, user: str | None = None) -> None:
        """Cached blocks belong to their tokens, not to a session: drop every block no running request
        holds, so a deleted chat's cache does not outlive it (other chats prefill once more)."""
        if self._closed or not self._manager.is_running():
            return
        with self._manager.pause():
            self._manager.batch_processor.cache.evict_cached_blocks()

    def save_sessions(self) -> None:
        """Part of the engine contract: this engine keeps its caches in memory only."""

    def stats(self) -> dict:
        with self._lock:
            running = len(self._requests)
        return {
            "model": self.model_name,
            "backend": self.backend,
            "device": self.device,
            "threads": self.n_threads,
            "context_size": self.n_ctx,
            "slots_total": self.parallel,
            "slots_in_use": min(running, self.parallel),
            "queue_depth": max(0, running - self.parallel),
            "requests_total": self.requests_total,
            "prefill_tokens_per_s": round(self.prefill_rate, 1),
            "decode_tokens_per_s": round(self.decode_rate, 1),
        }

    def close(self) -> None:
        """Stop the manager and the router, end what is still running. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        from native.engine import _registry_forget  # the registry lives with load_engine

        _registry_forget(self)
        self._manager.stop(block=True, hard_stop=True)
        self._router.join()
        self._fail_all("the engine was closed")

    # -- the router thread --------------------------------------------------------------------------

    def _route(self) -> None:
        while not self._closed:
            if not threading.main_thread().is_alive():
                self._stop_at_exit()
                return
            output = self._manager.get_result(timeout=POLL_S)
            if output is not None:
                self._deliver(output)
            self._reap()
            if not self._manager.is_running() and not self._closed:
                error = self._manager.background_thread_status.fatal_error
                self._failure = f"{type(error).__name__}: {error}" if error else "the generation loop stopped"
                log.error("torch engine for %s failed: %s", self.model_name, self._failure)
                self._fail_all(self._failure)
                return

    def _stop_at_exit(self) -> None:
        """The main thread has ended: stop the manager's loop. transformers starts it as a non-daemon
        thread, which Python joins before it runs exit handlers (`close_engines`), so a program that
        never closes its engine would otherwise wait for it forever."""
        self._closed = True
        self._manager.stop(block=False, hard_stop=True)
        self._fail_all("the process is exiting")

    def _deliver(self, output) -> None:
        with self._lock:
            tracked = self._requests.get(output.request_id)
        if tracked is None:
            return  # cancelled or stopped already: the manager may still report a step it had begun
        now = time.perf_counter()
        if tracked.started is None and output.lifespan[0] > 0:
            tracked.started = output.lifespan[0]
        for token in output.generated_tokens[tracked.seen :]:
            tracked.seen += 1
            tracked.first = tracked.first or now
            if token in self._eos:
                self._finish(output.request_id, "stop")
                return
            tracked.n_gen += 1
            tracked.stream.push(tracked.text.feed(self._piece(tracked, token)))
            if tracked.text.stopped:
                self._manager.cancel_request(output.request_id)
                self._finish(output.request_id, "stop")
                return
        if output.error:
            self._finish(output.request_id, "error", output.error)
        elif output.is_finished():
            self._finish(output.request_id, "length")  # not at an end-of-generation token: out of tokens

    def _piece(self, tracked: Tracked, token: int) -> bytes:
        """The new text `token` adds, decoded with the few tokens before it: tokenizers that mark word
        starts (sentencepiece's '▁') decode a token differently alone than after its neighbours. Text
        that ends in half a character waits for the next token."""
        before = self.tokenizer.decode(tracked.window, skip_special_tokens=False)
        tracked.window.append(token)
        after = self.tokenizer.decode(tracked.window, skip_special_tokens=False)
        if after.endswith("\ufffd"):
            return b""
        tracked.window = tracked.window[-4:]
        return after[len(before) :].encode()

    def _reap(self) -> None:
        with self._lock:
            cancelled = [rid for rid, t in self._requests.items() if t.stream.cancelled]
        for request_id in cancelled:
            self._manager.cancel_request(request_id)
            self._finish(request_id, "cancelled")

    def _finish(self, request_id: str, finish: str, error: str | None = None) -> None:
        tracked = self._untrack(request_id)
        if tracked is None:
            return
        cached = min(self._cached.pop(request_id, 0), len(tracked.tokens))
        tracked.stream.push(tracked.text.flush())
        completion = _completion(tracked, finish, cached, error)
        if completion.timings.prefill_tokens_per_s:
            self.prefill_rate = _ema(self.prefill_rate, completion.timings.prefill_tokens_per_s)
        if completion.timings.decode_tokens_per_s:
            self.decode_rate = _ema(self.decode_rate, completion.timings.decode_tokens_per_s)
        log.info(
            "model=%s backend=torch session=%s prompt=%d cached=%d completion=%d finish=%s ttft=%.3fs "
            "prefill=%.0f tok/s decode=%.1f tok/s",
            self.model_name,
            tracked.session,
            completion.usage.prompt_tokens,
            completion.usage.cached_tokens,
            completion.usage.completion_tokens,
            finish,
            completion.timings.time_to_first_token,
            completion.timings.prefill_tokens_per_s,
            completion.timings.decode_tokens_per_s,
        )
        tracked.stream.finish(completion)

    def _untrack(self, request_id: str) -> Tracked | None:
        with self._lock:
            return self._requests.pop(request_id, None)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            ids = list(self._requests)
        for request_id in ids:
            self._finish(request_id, "error", reason)

    def _count_prefix_matches(self) -> None:
        """Record how many prompt tokens each request found cached. transformers computes the figure
        when it admits a request (`PagedAttentionCache.search_prefix_match`) and reports it nowhere,
        so the cache's method is wrapped on this one instance (transformers is pinned in
        requirements-torch.txt)."""
        cache = self._manager.batch_processor.cache
        search = cache.search_prefix_match

        def counted(request_id: str, prompt_ids: list[int]) -> int:
            matched = search(request_id, prompt_ids)
            self._cached[request_id] = matched
            return matched

        cache.search_prefix_match = counted

    def _check_alive(self) -> None:
        if self._failure:
            raise EngineFailed(
                f"the torch engine for {self.model_name} failed: {self._failure}; load it again"
            )
        if self._closed:
            raise EngineFailed(f"the torch engine for {self.model_name} was closed")


def _eos_ids(model, tokenizer) -> list[int]:
    """Every token that ends a reply: the generation config's and the tokenizer's end of sequence."""
    ids = model.generation_config.eos_token_id
    ids = list(ids) if isinstance(ids, list | tuple) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise EngineFailed("the model names no end-of-sequence token: its replies could not end")
    return ids


def _completion(tracked: Tracked, finish: str, cached: int, error: str | None) -> Completion:
    ended = time.perf_counter()
    started = tracked.started or tracked.submitted
    first = tracked.first
    return Completion(
        text=tracked.text.text,
        finish_reason=finish,  # type: ignore[arg-type]
        usage=Usage(len(tracked.tokens), cached, tracked.n_gen, "slot" if cached else None),
        timings=Timings(
            time_to_first_token=(first or ended) - tracked.submitted,
            prefill_tokens_per_s=(len(tracked.tokens) - cached) / max(first - started, 1e-9)
            if first
            else 0.0,
            decode_tokens_per_s=(tracked.n_gen - 1) / (ended - first) if first and tracked.n_gen > 1 else 0.0,
            queued_s=max(0.0, started - tracked.submitted),
        ),
        error=error,
    )


def _ema(previous: float, sample: float) -> float:
    return sample if previous == 0.0 else (1 - EMA) * previous + EMA * sample
