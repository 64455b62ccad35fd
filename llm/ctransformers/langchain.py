"""`CTransformers`: LangChain's ctransformers LLM (langchain_community's shape) over Hearth's engine.

    from llm.ctransformers import CTransformers
    llm = CTransformers(model="default", model_type="llama", config={"max_new_tokens": 64})

Config keys may also be given flat (`CTransformers(model=..., temperature=0.5, stream=True)`, as
seed 002's app does): they mean what they mean inside `config`. An unknown key is refused, naming the
one meant; LangChain's own fields (callbacks, tags, verbose, ...) work as on any LLM.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.outputs import GenerationChunk
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from llm import keywords
from llm._base import completion_info
from llm.ctransformers.config import FIELDS, config_with
from llm.ctransformers.model import LLM, AutoModelForCausalLM, Started
from llm.llms import StreamedLLM


class CTransformers(StreamedLLM):
    """A ctransformers model as a LangChain text-completion LLM (no chat template: the prompt goes to
    the model as given)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str = Field(description="A GGUF file, a folder holding one, a name in models/ or a catalog name.")
    model_type: str | None = Field(None, description="ctransformers' model type, checked against the file.")
    model_file: str | None = Field(None, description="The model file inside the folder `model`.")
    config: dict[str, Any] | None = Field(None, description="ctransformers Config fields.")
    lib: str | None = Field(None, description="The llama.cpp build that must run it: avx2, avx, basic, ...")

    _client: LLM | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _flat_config(cls, data: Any) -> Any:
        """Config keys given flat join `config`; a key given both ways with two values is refused."""
        if not isinstance(data, dict):
            return data
        flat = {k: v for k, v in data.items() if k in FIELDS and k not in cls.model_fields}
        known = keywords.field_names(cls) | FIELDS
        keywords.check(cls.__name__, data, known)
        nested = dict(data.get("config") or {})
        clashes = [k for k, v in flat.items() if k in nested and nested[k] != v]
        if clashes:
            raise ValueError(f"{clashes[0]} is given twice, flat and in config, with two values")
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "config": {**nested, **flat}} if flat or "config" in data else rest

    def __init__(self, **values: Any) -> None:
        """Load (or share) the model now, as langchain_community's class does, so a bad argument fails
        here and not at the first question, with its own exception (a model type that contradicts
        the file, a build not in use), not wrapped in a pydantic ValidationError."""
        super().__init__(**values)
        self._client = AutoModelForCausalLM.from_pretrained(
            self.model,
            model_type=self.model_type,
            model_file=self.model_file,
            lib=self.lib,
            **(self.config or {}),
        )

    @property
    def client(self) -> LLM:
        assert self._client is not None
        return self._client

    @property
    def _llm_type(self) -> str:
        return "ctransformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_type": self.model_type,
            "model_file": self.model_file,
            "config": dataclasses.asdict(self.client.config),
        }

    def _start(self, prompt: str, stop: list[str] | None, kwargs: dict[str, Any]) -> Started:
        """Submit `prompt` with the config, `stop` and per-call Config keywords; LangChain always
        streams (as langchain_community's class calls the model with stream=True)."""
        config = config_with(f"{type(self).__name__} call", self.client.config, {**kwargs, "stream": True})
        if stop:
            config.stop = [*(config.stop or []), *stop]
        return self.client.start(prompt, config)

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        started = self._start(prompt, stop, kwargs)
        for delta in started.pieces():
            chunk = GenerationChunk(text=delta)
            if run_manager:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
        yield self._final_chunk(started.stream)

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        started = await asyncio.to_thread(self._start, prompt, stop, kwargs)  # tokenizing: off the loop
        async for delta in started.apieces():
            chunk = GenerationChunk(text=delta)
            if run_manager:
                await run_manager.on_llm_new_token(delta, chunk=chunk)
            yield chunk
        yield self._final_chunk(started.stream)

    def _final_chunk(self, stream) -> GenerationChunk:
        return GenerationChunk(text="", generation_info=completion_info(stream.completion, self.model))
