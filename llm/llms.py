"""`HearthLLM`: a LangChain text-completion LLM over the local engine (no chat template applied)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.llms import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from llm._base import HearthFields, completion_info


class StreamedLLM(BaseLLM):
    """A LangChain text-completion LLM whose every call is its `_stream`/`_astream`: a whole generation
    is the chunks put together, so streaming and not streaming cannot disagree."""

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return LLMResult(
            generations=[[aggregate(self._stream(p, stop, run_manager, **kwargs))] for p in prompts]
        )

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        generations = []
        for p in prompts:
            chunks = [c async for c in self._astream(p, stop, run_manager, **kwargs)]
            generations.append([aggregate(chunks)])
        return LLMResult(generations=generations)


class HearthLLM(StreamedLLM, HearthFields):
    """Text completion with a local GGUF model: the prompt goes to the model exactly as given.

    ```python
    from llm import HearthLLM
    llm = HearthLLM(model="default", temperature=0.0, max_new_tokens=8)
    llm.invoke("The capital of France is")
    ```
    Instances naming the same model share one engine (one copy of the weights).
    """

    @property
    def _llm_type(self) -> str:
        return "hearth-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model_name, **self._settings(None, {}).model_dump()}

    def _chunk(self, delta: str) -> GenerationChunk:
        return GenerationChunk(text=delta)

    def _final_chunk(self, stream) -> GenerationChunk:
        return GenerationChunk(text="", generation_info=completion_info(stream.completion, self.model_name))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        stream = self._submit(prompt, self._settings(stop, kwargs))
        yield from self._chunks(stream, run_manager)

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        # Tokenizing, a busy engine's back-off and a remote engine's round trip: off the loop.
        stream = await asyncio.to_thread(self._submit, prompt, self._settings(stop, kwargs))
        async for chunk in self._achunks(stream, run_manager):
            yield chunk



def aggregate(chunks) -> Generation:
    """The chunks of one reply added up into its Generation."""
    total: GenerationChunk | None = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    return (
        Generation(text=total.text, generation_info=total.generation_info) if total else Generation(text="")
    )
