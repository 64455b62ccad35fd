"""ctransformers' `AutoModelForCausalLM` and `LLM` over Hearth's shared engine.

    from llm.ctransformers import AutoModelForCausalLM
    llm = AutoModelForCausalLM.from_pretrained("default", model_type="llama")
    print(llm("AI is going to", max_new_tokens=32))

Each argument keeps ctransformers' meaning: `model_type` must match the file's architecture,
`context_length`, `threads` and `gpu_layers` shape the engine the model loads into, `lib` names the
llama.cpp build that must run it, and the sampling keywords take ctransformers' defaults. The engine
is shared (one copy of the weights per model file, as for every face of Hearth): a model already
loaded with another context or thread count is refused with the values it has, not silently used.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm.ctransformers import libs
from llm.ctransformers.config import AutoConfig, Config, config_with, typed
from llm.ctransformers.model_types import check_model_type
from llm.nano.model import require_local
from native import Engine, SamplingParams, Stream, load_engine
from native.errors import DeviceUnavailable
from native.gguf_info import inspect_gguf
from native.hardware import choose_device
from native.resolve import resolve_model

log = logging.getLogger("hearth.ctransformers")


class LLM:
    """A loaded model with ctransformers' methods (`__call__`, `generate`, `tokenize`, ...)."""

    def __init__(
        self,
        model_path: str,
        model_type: str | None = None,
        *,
        config: Config | None = None,
        lib: str | None = None,
    ) -> None:
        require_local(model_path)
        self._config = config or Config()
        self._model_path = str(resolve_model(model_path))
        info = inspect_gguf(self._model_path)  # the header only: refuse a wrong model_type before loading
        check_model_type(model_type, info.architecture, self._model_path)
        self._model_type = model_type or info.architecture
        libs.require(lib)
        self.engine: Engine = _engine(self._model_path, self._config)
        self._context: list[int] = []
        """Every token evaluated since the last reset: what `reset=False` continues from."""

    # -- properties ctransformers documents ---------------------------------------------------------

    @property
    def model_path(self) -> str:
        return self._model_path

    @property
    def model_type(self) -> str:
        return self._model_type

    @property
    def config(self) -> Config:
        return self._config

    @property
    def eos_token_id(self) -> int:
        return self.engine.eos_token_id

    @property
    def vocab_size(self) -> int:
        return self.engine.vocab_size

    @property
    def context_length(self) -> int:
        """Tokens in the context (one session's)."""
        return self.engine.n_ctx

    # -- tokens -------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        return self.engine.tokenize(text)

    def detokenize(self, tokens: Sequence[int] | int, decode: bool = True) -> str | bytes:
        """The text of `tokens`; with `decode=False` its raw bytes (a token may end mid-character)."""
        if isinstance(tokens, int):
            tokens = [tokens]
        data = b"".join(self.engine.token_bytes(t) for t in tokens)
        return data.decode(errors="ignore") if decode else data

    def is_eos_token(self, token: int) -> bool:
        return self.engine.is_end_token(token)

    def reset(self) -> None:
        """Forget the tokens a `reset=False` generation would continue from."""
        self._context = []

    # -- generation ---------------------------------------------------------------------------------

    def generate(
        self,
        tokens: Sequence[int],
        *,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        repetition_penalty: float | None = None,
        last_n_tokens: int | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        reset: bool | None = None,
    ) -> Iterator[int]:
        """New token ids after `tokens`, until the model ends its text (or the context is full); the
        end token itself is not yielded. Stop early by leaving the loop."""
        config = _with(self._config, top_k=top_k, top_p=top_p, temperature=temperature, seed=seed)
        config = _with(config, repetition_penalty=repetition_penalty, last_n_tokens=last_n_tokens)
        config = _with(config, batch_size=batch_size, threads=threads, reset=reset)
        prompt = self._prompt(list(tokens), config.reset)
        config.max_new_tokens, config.stop = self.engine.n_ctx - len(prompt), None  # ctransformers: no limit
        return self._submit(prompt, config).token_ids()

    def __call__(
        self,
        prompt: str,
        *,
        max_new_tokens: int | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        repetition_penalty: float | None = None,
        last_n_tokens: int | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        stop: Sequence[str] | str | None = None,
        stream: bool | None = None,
        reset: bool | None = None,
    ) -> str | Iterator[str]:
        """The text generated after `prompt`; with `stream=True`, an iterator over its pieces."""
        config = _with(self._config, top_k=top_k, top_p=top_p, temperature=temperature, seed=seed)
        config = _with(config, repetition_penalty=repetition_penalty, last_n_tokens=last_n_tokens)
        config = _with(config, batch_size=batch_size, threads=threads, reset=reset)
        config = _with(config, max_new_tokens=max_new_tokens, stop=stop, stream=stream)
        pieces = self.start(prompt, config).pieces()
        return pieces if config.stream else "".join(pieces)

    def start(self, prompt: str, config: Config) -> Started:
        """Submit `prompt` with every setting of `config` (what `__call__` and LangChain share)."""
        continuing = not config.reset and bool(self._context)
        tokens = self.engine.tokenize(prompt, add_special=not continuing)  # BOS only at the start
        return self._submit(self._prompt(tokens, config.reset), config)

    # -- how the calls map onto the engine -----------------------------------------------------------

    def _prompt(self, tokens: list[int], reset: bool) -> list[int]:
        """The whole prompt: `tokens` alone after a reset, else after every token evaluated so far
        (the engine finds those in its cache and computes only the new ones)."""
        if reset:
            self._context = []
        return [*self._context, *tokens]

    def _submit(self, prompt: list[int], config: Config) -> Started:
        if config.threads not in (None, -1) and config.threads != self.engine.n_threads:
            raise ValueError(
                f"threads={config.threads}: this model runs with {self.engine.n_threads} threads, set when "
                "it was loaded and shared by every chat on it; pass threads= to from_pretrained instead"
            )
        stop = config.stop or ()
        sampling = SamplingParams(
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            min_p=0.0,  # ctransformers has no min-p: leaving Hearth's on would change its replies
            repetition_penalty=config.repetition_penalty,
            penalty_last_n=config.last_n_tokens,
            seed=None if config.seed < 0 else config.seed,
            # ctransformers checks the count after each token: 0 still gives one.
            max_new_tokens=max(1, config.max_new_tokens),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
        )
        # batch_size only set how many prompt tokens ctransformers evaluated at once: the engine
        # batches prompts with every other session's, and replies do not depend on it.
        return Started(self, prompt, self.engine.submit(prompt, sampling))


@dataclass
class Started:
    """One generation under way. When it ends (or its reader leaves), the model remembers the prompt
    and the reply's tokens: what a `reset=False` call continues from."""

    llm: LLM
    prompt: list[int]
    stream: Stream

    def pieces(self) -> Iterator[str]:
        try:
            yield from self.stream
        finally:
            self._end()

    async def apieces(self) -> AsyncIterator[str]:
        try:
            async for piece in self.stream:
                yield piece
        finally:
            self._end()

    def token_ids(self) -> Iterator[int]:
        sent = 0
        try:
            for _ in self.stream:  # each text piece comes after its tokens
                yield from self.stream.tokens[sent:]
                sent = len(self.stream.tokens)
            yield from self.stream.tokens[sent:]  # a token whose text was held back (half a character)
        finally:
            self._end()

    def _end(self) -> None:
        self.stream.cancel()  # a no-op once finished; stops the generation when the reader leaves early
        self.llm._context = [*self.prompt, *self.stream.tokens]


def _with(config: Config, **given: Any) -> Config:
    """`config` with the given values that are not None (ctransformers' `get(value, config.value)`)."""
    return dataclasses.replace(config, **{k: typed(k, v) for k, v in given.items() if v is not None})


class AutoModelForCausalLM:
    @classmethod
    def from_pretrained(
        cls,
        model_path_or_repo_id: str,
        *,
        model_type: str | None = None,
        model_file: str | None = None,
        config: AutoConfig | None = None,
        lib: str | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        hf: bool = False,
        **kwargs: Any,
    ) -> LLM:
        """Load a model: a GGUF file, a folder (with `model_file`, the file in it), a name in models/
        or a catalog name. `kwargs` are `Config` fields. Nothing is downloaded: Hearth runs local files,
        so a Hugging Face repo id is looked up as a model name, and `local_files_only` holds anyway."""
        if hf:
            raise NotImplementedError(
                "hf=True returns a transformers model in ctransformers; Hearth runs GGUF files through "
                "llama.cpp: leave hf out (LLM has tokenize, generate and __call__)"
            )
        if revision is not None:
            log.info("revision=%r: Hearth loads local files, which have no revisions", revision)
        base = config.config if config is not None else None
        chosen = config_with("AutoModelForCausalLM.from_pretrained", base, kwargs)
        model_type = model_type or (config.model_type if config is not None else None)
        return LLM(_model_file(model_path_or_repo_id, model_file), model_type, config=chosen, lib=lib)


def _model_file(path: str, model_file: str | None) -> str:
    """ctransformers' `model_file`: the file inside the folder `path`."""
    if model_file is None:
        return path
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"model_file={model_file!r} names a file in a folder, but {path} is not a folder")
    file = folder / model_file
    if not file.is_file():
        raise ValueError(f"Model file {model_file!r} not found in {folder}")
    return str(file)


def _engine(path: str, config: Config) -> Engine:
    """The shared engine for `path`, shaped by the config's model fields."""
    n_ctx = None if config.context_length in (None, -1) else config.context_length
    threads = None if config.threads in (None, -1) else config.threads
    device = "cpu" if config.gpu_layers <= 0 else choose_device("auto")
    if config.gpu_layers > 0 and not device.is_gpu:
        raise DeviceUnavailable(
            f"gpu_layers={config.gpu_layers}: this llama.cpp build runs on the CPU only ({libs.describe()}); "
            "use gpu_layers=0, or a CUDA, Metal or Vulkan build of llama-cpp-python"
        )
    if config.gpu_layers > 0:
        log.info("gpu_layers=%d: llama.cpp offloads every layer to %s", config.gpu_layers, device)
    engine = load_engine(path, device, n_ctx=n_ctx, n_threads=threads)
    if (n_ctx and engine.n_ctx < n_ctx) or (threads and engine.n_threads != threads):
        raise ValueError(
            f"{Path(path).name} is already loaded with {engine.n_ctx}-token contexts and {engine.n_threads} "
            f"threads, shared by every model object on it; context_length={config.context_length} and "
            f"threads={config.threads} cannot apply: pass those values, or leave them out"
        )
    return engine  # type: ignore[return-value]
