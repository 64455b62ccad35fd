"""`NanoLLM`: NanoLLM's model API over Hearth's shared engine.

    model = NanoLLM.from_pretrained("default")
    reply = model.generate("Once upon a time", max_new_tokens=32)
    for token in reply:
        print(token, end="", flush=True)

`from_pretrained` goes through `native.load_engine`, so every face of Hearth naming the same model
(ChatModule, ChatHearth, the Chainlit app) shares one copy of the weights.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm import keywords
from llm._base import configured_engine
from llm.nano.stream import KVCache, StreamingResponse
from llm.nano.templates import stop_strings
from llm.settings import GenerationSettings
from llm.tools import Function
from native import Engine
from native.remote import is_remote

log = logging.getLogger("hearth.nano")


@dataclass(frozen=True)
class ModelConfig:
    """What NanoLLM code reads from `model.config`."""

    name: str
    type: str
    """The GGUF architecture (llama, gemma3, ...)."""
    max_length: int
    """Tokens in one session's context."""
    path: Path


class NanoLLM:
    """A loaded model (the shared engine) with NanoLLM's `generate`."""

    has_vision = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        info = engine.info
        self.config = ModelConfig(info.name or engine.model_name, info.architecture, engine.n_ctx, info.path)

    @classmethod
    @keywords.checked
    def from_pretrained(
        cls,
        model: str | None = None,
        api: str | None = None,
        quantization: str | None = None,
        api_token: str | None = None,
        device: str = "auto",
        max_context_len: int | None = None,
    ) -> NanoLLM:
        """The model at `model` (a .gguf path, a folder, a name in models/ or a catalog name; by default
        `HEARTH_MODEL`, else the default model).
        NanoLLM's `api`, `quantization` and `api_token` choose among its backends and downloads; Hearth
        runs GGUF files with llama.cpp, whose quantization is the file's own, so they are only logged."""
        unused = {k: v for k, v in {"api": api, "quantization": quantization}.items() if v}
        if unused or api_token:
            shown = {**unused, **({"api_token": "..."} if api_token else {})}
            log.info("from_pretrained: %s do not apply to llama.cpp and GGUF files", shown)
        require_local(model)
        return cls(configured_engine(model, device, max_context_len))

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self.engine.tokenize(text, add_special=add_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.engine.detokenize(tokens)

    def generate(
        self,
        inputs: str | Sequence[int],
        streaming: bool = True,
        functions: Sequence[Function | Callable[..., Any]] | None = None,
        kv_cache: KVCache | None = None,
        stop_tokens: Sequence[str | int] | None = None,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.95,
        repetition_penalty: float = 1.0,
        **kwargs: Any,
    ) -> StreamingResponse | str:
        """Generate from `inputs`: text or token ids, continuing `kv_cache` when given (then `inputs`
        holds only what follows the cached tokens, as `ChatHistory.embed_chat` returns it).

        Sampling is greedy unless `do_sample`; other `GenerationSettings` fields (top_k, min_p, seed,
        presence_penalty, frequency_penalty) pass as keywords and are validated there. `functions`
        may be called by the model mid-reply (see `bot_function`). Returns the streaming reply, or
        its text when `streaming` is False."""
        if "min_new_tokens" in kwargs:  # NanoLLM's own, so no typo of max_new_tokens: say so
            raise TypeError("NanoLLM.generate: min_new_tokens is not supported (nothing holds back the end)")
        known = keywords.field_names(GenerationSettings) | _GENERATE_KEYWORDS
        keywords.check("NanoLLM.generate", kwargs, known)
        settings = GenerationSettings.model_validate(
            {
                "max_new_tokens": max_new_tokens,
                "temperature": temperature if do_sample else 0.0,
                "top_p": top_p,
                "repetition_penalty": repetition_penalty,
                **kwargs,
            }
        )
        cache = kv_cache if kv_cache is not None else KVCache(f"nano-{uuid.uuid4().hex}")
        prompt = [*cache.tokens, *self._tokens(inputs, continuing=bool(cache.tokens))]
        sampling = settings.sampling(stop_strings(self.engine, stop_tokens))
        reply = StreamingResponse(self.engine, prompt, sampling, cache, _functions(functions))
        return reply if streaming else reply.wait()

    def _tokens(self, inputs: str | Sequence[int], continuing: bool) -> list[int]:
        if isinstance(inputs, str):
            return self.engine.tokenize(inputs, add_special=not continuing)  # BOS only at the start
        if isinstance(inputs, Sequence) and all(isinstance(t, int) and t >= 0 for t in inputs):
            return list(inputs)
        raise TypeError(f"inputs must be text or a list of token ids, got {type(inputs).__name__}")


# generate's named parameters: with GenerationSettings' fields, every keyword it takes.
_GENERATE_KEYWORDS = frozenset(
    {"inputs", "streaming", "functions", "kv_cache", "stop_tokens", "max_new_tokens", "do_sample"}
    | {"temperature", "top_p", "repetition_penalty"}
)


def require_local(model: str | None) -> None:
    """Refuse a server URL: these APIs tokenize and keep KV caches, which needs the model here."""
    if is_remote(model):
        raise ValueError(
            f"{model} is a server, but NanoLLM, ChatHistory and ChatModule run a local GGUF model "
            "(they tokenize and keep each chat's KV cache); use ChatHearth(model=URL) for a server"
        )


def _functions(functions: Sequence[Function | Callable[..., Any]] | None) -> list[Function]:
    return [f if isinstance(f, Function) else Function.from_callable(f) for f in functions or ()]
