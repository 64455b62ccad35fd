"""`SamplingParams` on transformers' continuous batching: each request's own sampling in one batch.

Continuous batching samples every row of a batch in one `torch.multinomial` (`do_sample=True`), after
its per-request warpers for temperature, top-k and top-p (`per_request_processors=True`); each
request carries its values as `logit_processor_kwargs`. What it lacks, `PenaltiesAndMinP` adds as one
more per-request processor, run first, in llama.cpp's order (penalties before truncation):
repetition, presence and frequency penalties over the last `penalty_last_n` tokens (prompt included,
as llama.cpp's server counts them), then min-p on the penalised, untempered logits.

Greedy is top-k 1: only the most likely token survives, so the draw can only pick it (an exact tie
of two float logits, the one case where argmax and the draw could differ, does not happen in practice).

What it cannot do is refused by `check_supported`: a grammar (llama.cpp's sampler), and a seed at a
temperature above 0 (the batch shares one generator, so no single request's draws can be replayed).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)

from native.errors import UnsupportedSampling
from native.sampling import SamplingParams

# The manager's defaults only decide that each warper exists (transformers creates none for a value
# that would do nothing: temperature 1.0, top-k 0); every request then sends its own values.
DEFAULTS = {"do_sample": True, "temperature": 0.8, "top_k": 40, "top_p": 0.95}
_KEY = "hearth_sampling"


def check_supported(params: SamplingParams) -> None:
    """Raise UnsupportedSampling for what this backend cannot honour, before anything is queued."""
    if params.grammar:
        raise UnsupportedSampling(
            "the torch backend has no grammar sampler (JSON output, tool calls): load the model with the "
            "llama.cpp backend for them"
        )
    if params.seed is not None and params.temperature > 0:
        raise UnsupportedSampling(
            "the torch backend cannot seed one request: its batch shares one random generator. Leave the "
            "seed out, use temperature 0, or load the model with the llama.cpp backend"
        )


def request_kwargs(params: SamplingParams, vocab_size: int) -> dict[str, Any]:
    """The `logit_processor_kwargs` of one request."""
    greedy = params.temperature <= 0
    return {
        "temperature": 1.0 if greedy else float(params.temperature),
        "top_k": 1 if greedy else int(params.top_k or vocab_size),
        "top_p": 1.0 if greedy else float(params.top_p),
        _KEY: params,
    }


class PenaltiesAndMinP(ContinuousBatchingLogitsProcessor):
    """Per-request penalties and min-p. The batch's rows are known when the arguments are prepared
    (`prepare_tensor_args`, called just before the forward whose logits `__call__` then gets), so the
    rows' recent tokens are kept here between the two calls rather than squeezed into the one int32
    the manager stores per row and processor."""

    supported_kwargs: dict[str, type] = {_KEY: SamplingParams}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._rows: list[tuple[SamplingParams | None, list[int]]] = []

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.zero_()

    def prepare_tensor_args(self, requests_with_new_token: list) -> torch.Tensor:
        rows = []
        for request in requests_with_new_token:
            state = request.state
            params = state.logit_processor_kwargs.get(_KEY)
            recent: list[int] = []
            if params is not None and params.penalises:
                recent = (state.initial_tokens + state.generated_tokens)[-params.penalty_last_n :]
            rows.append((params, recent))
        self._rows = rows
        return torch.zeros(len(rows), dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        # scores: [rows, vocab], one row per request that gets a token this step, in the order prepared
        for row, (params, recent) in enumerate(self._rows[: scores.size(0)]):
            if params is None:
                continue
            if recent:
                scores[row] = penalise(scores[row], recent, params)
            if params.min_p > 0 and params.temperature > 0:
                scores[row] = min_p(scores[row], params.min_p)
        return scores


def penalise(logits: torch.Tensor, recent: list[int], params: SamplingParams) -> torch.Tensor:
    """llama.cpp's penalties (llama-sampling.cpp, penalties_apply): a seen token's logit is divided by
    the repetition penalty when positive, multiplied when negative, then lowered by presence + count *
    frequency."""
    ids, counts = torch.tensor(recent, device=logits.device).unique(return_counts=True)
    seen = logits[ids]
    seen = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
    seen = seen - params.presence_penalty - counts.to(logits.dtype) * params.frequency_penalty
    logits = logits.clone()
    logits[ids] = seen
    return logits


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop tokens whose probability is below p times the most likely one's: in logits, below
    max + log(p)."""
    floor = logits.max() + torch.log(torch.tensor(p, dtype=logits.dtype))
    return logits.masked_fill(logits < floor, float("-inf"))


def add_to(processors: ContinuousBatchingLogitsProcessorList) -> None:
    """Put `PenaltiesAndMinP` first in a manager's processors. Call before the manager builds its
    batch processor: the argument storage is sized by `tensors_required` then."""
    processors.logits_processor.insert(0, PenaltiesAndMinP())
    processors.tensors_required += 1
    processors.supported_keys[_KEY] = SamplingParams
    processors.do_processing = True
