"""What the LangChain LLM and chat model share: their fields, the engine they run on, and the one
place that turns engine output into LangChain chunks (for sync and async alike)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

import prompts
from llm import keywords
from llm.settings import EngineConfig, GenerationFields, GenerationSettings
from native import Completion, Engine, RemoteEngine, Stream, load_engine
from native.errors import EngineBusy
from native.gguf_info import ModelInfo


def model_template(info: ModelInfo, override: str | None = None) -> prompts.ChatTemplate:
    """The chat template a model's conversations are rendered with: `override` (a built-in name or a
    JSON file) if given, else the one `prompts.template_for` picks from the model's GGUF metadata."""
    return prompts.template_for(
        chat_template=info.chat_template,
        architecture=info.architecture,
        model_name=info.name or info.path.stem,
        eos_token=info.eos_token,
        bos_token=info.bos_token,
        override=override,
    )


def configured_engine(
    model: str | None = None,
    device: str | None = None,
    n_ctx: int | None = None,
    backend: str | None = None,
    api_key: str | None = None,
) -> Engine | RemoteEngine:
    """The shared engine for `model` (else `HEARTH_MODEL`, else the default), with the `HEARTH_*`
    configuration filling in whatever the caller leaves out. Loads only on first use. `api_key`: a
    remote server's (else `HEARTH_API_KEY`)."""
    config = EngineConfig()
    return load_engine(
        model or config.model,
        device or config.device,
        n_ctx=n_ctx or config.ctx_size,
        n_threads=config.threads,
        parallel=config.parallel,
        backend=backend or config.backend,
        api_key=api_key,
    )


class HearthFields(GenerationFields):
    """Fields of `HearthLLM` and `ChatHearth`: the model to run plus every generation setting."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model: str = Field("default", description="Model path, folder, name in models/, or catalog name.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, metal or vulkan.")
    n_ctx: int | None = Field(None, description="Context window in tokens (default: the engine's).")
    engine: Any = Field(None, exclude=True, description="An engine to use instead of loading `model`.")
    session_id: str | None = Field(None, description="Keeps this conversation's KV cache in the engine.")
    user: str | None = Field(
        None, description="Whose conversation this is: cached prefixes are shared only among one user's."
    )
    timeout: float | None = Field(None, gt=0, description="Seconds a generation may take before it is cut.")
    max_retries: int = Field(2, ge=0, description="Retries when the engine's queue is full.")
    api_key: SecretStr | None = Field(
        None,
        description="The key of the server when `model` is a URL (else HEARTH_API_KEY); a local model "
        "has no use for one (LangChain's standard parameter, so it is accepted).",
    )

    _engine: Engine | RemoteEngine | None = PrivateAttr(None)

    # Per-call keywords the class itself consumes besides the generation settings (ChatHearth: tools).
    CALL_KEYWORDS: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _known_keywords(cls, data: Any) -> Any:
        """pydantic (and LangChain's classes) ignore unknown keywords: a typo would silently run with
        the default. Refuse it, naming the closest field; LangChain's own fields are fields too."""
        if isinstance(data, dict):
            keywords.check(cls.__name__, data, keywords.field_names(cls))
        return data

    def get_engine(self) -> Engine | RemoteEngine:
        """The engine this instance runs on: shared with every other instance of the same model."""
        if self._engine is None:
            if self.engine is not None:
                self._engine = self.engine
            else:
                key = self.api_key.get_secret_value() if self.api_key else None
                self._engine = configured_engine(self.model, self.device, self.n_ctx, key)
        return self._engine

    @property
    def model_name(self) -> str:
        return self.get_engine().model_name if self.engine is not None else self.model

    def _settings(self, stop: list[str] | None, kwargs: dict[str, Any]) -> GenerationSettings:
        """This instance's settings, with per-call overrides (`stop=`, `temperature=` ...) validated."""
        per_call = keywords.field_names(GenerationFields)
        keywords.check(f"{type(self).__name__} call", kwargs, per_call | self.CALL_KEYWORDS)
        values = self.model_dump(include=set(GenerationFields.model_fields))
        given = keywords.canonical(GenerationFields, {k: v for k, v in kwargs.items() if k in per_call})
        values.update(given)
        if stop:
            values["stop"] = [*values["stop"], *stop]
        return GenerationSettings.model_validate(values)

    def _submit(
        self,
        prompt: str | list[dict[str, str]],
        settings: GenerationSettings,
        extra_stop: tuple[str, ...] = (),
        followed_by: str | None = None,
    ) -> Stream:
        """Submit a prompt (or, to a remote engine, chat messages), retrying while the queue is full.
        `followed_by`: see `Engine.submit`."""
        engine = self.get_engine()
        for attempt in range(self.max_retries + 1):
            try:
                return engine.submit(
                    prompt,
                    settings.sampling(extra_stop),
                    session=self.session_id,
                    followed_by=followed_by,
                    user=self.user,
                )
            except EngineBusy:
                if attempt == self.max_retries:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def _chunks(self, stream: Stream, run_manager: Any) -> Iterator[Any]:
        """Each delta as a LangChain chunk, reported to the callbacks, then one chunk with the usage."""
        deadline = Deadline(stream, self.timeout)
        for delta in stream:
            deadline.check()
            chunk = self._chunk(delta)
            if run_manager:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
        yield self._final_chunk(stream)

    async def _achunks(self, stream: Stream, run_manager: Any) -> AsyncIterator[Any]:
        """`_chunks` for async consumers: the same chunks, awaited callbacks."""
        deadline = Deadline(stream, self.timeout)
        async for delta in stream:
            deadline.check()
            chunk = self._chunk(delta)
            if run_manager:
                await run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
        yield self._final_chunk(stream)


class Deadline:
    """Cancels a stream that runs past `timeout` seconds."""

    def __init__(self, stream: Stream, timeout: float | None) -> None:
        self.stream = stream
        self.at = time.monotonic() + timeout if timeout else None

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            self.stream.cancel()
            raise TimeoutError("the generation took longer than the timeout and was cancelled")


def completion_info(completion: Completion | None, model_name: str) -> dict[str, Any]:
    """The metadata LangChain users look for in `generation_info` / `response_metadata`."""
    if completion is None:
        return {"model_name": model_name}
    usage, timings = completion.usage, completion.timings
    return {
        "model_name": model_name,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": usage.cached_tokens,
        "cached_from": usage.cached_from,
        "completion_tokens": usage.completion_tokens,
        "time_to_first_token": timings.time_to_first_token,
        "prefill_tokens_per_s": timings.prefill_tokens_per_s,
        "decode_tokens_per_s": timings.decode_tokens_per_s,
    }
