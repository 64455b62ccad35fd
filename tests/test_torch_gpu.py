"""The torch engine on an NVIDIA GPU: bf16 weights dequantized from the default model's GGUF file,
transformers' continuous batching and paged attention on CUDA. They need torch with CUDA and a GPU, and
skip elsewhere with the reason; bench/gpu_check.sh runs them (`-m gpu`), with the transformers release
requirements-torch.txt pins carried in its bundle (the GPU image's is older).

What they hold is what the CPU tests (tests/test_torch_engine.py) hold, on the GPU: a second turn finds
the first in the cache, users never share pages, four streams run side by side.
"""

from __future__ import annotations

import pytest
from support.streams import assert_streams_run_side_by_side

from native import SamplingParams, load_engine
from native.errors import DeviceUnavailable
from native.torch_load import TORCH_INSTALL, torch_device, torch_missing


def why_not() -> str | None:
    if torch_missing():
        return f"the torch backend is not installed ({TORCH_INSTALL})"
    try:
        torch_device("cuda")
    except DeviceUnavailable as exc:
        return str(exc)
    return None


WHY_NOT = why_not()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

GREEDY = SamplingParams(temperature=0.0, max_new_tokens=48, repetition_penalty=1.0, min_p=0.0)
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
QUESTIONS = [
    "Write a long story about a dragon.",
    "List ten facts about the moon, one per line.",
    "Explain how a bicycle works to a child.",
    "How do plants make food?",
]


@pytest.fixture(scope="module")
def gpu_torch():
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    engine = load_engine("default", "cuda", backend="torch", parallel=4, n_ctx=2048)
    yield engine
    engine.close()
    patch.undo()


def test_the_model_runs_on_the_gpu(gpu_torch):
    assert gpu_torch.device.startswith("cuda")
    assert gpu_torch.stats()["device"] == gpu_torch.device
    assert str(next(gpu_torch.model.parameters()).device).startswith("cuda")
    done = gpu_torch.submit(CHAT.format(QUESTIONS[0]), GREEDY).result(timeout=120)
    assert done.finish_reason in ("stop", "length") and done.usage.completion_tokens > 0


def test_a_second_turn_reuses_the_first_turns_cache(gpu_torch):
    first = CHAT.format("Name a large animal.")
    reply = gpu_torch.submit(first, GREEDY, user="gpu", session="zoo").result(timeout=120)
    second = first + reply.text + "<|im_end|>\n" + CHAT.format("And a small one?")
    done = gpu_torch.submit(second, GREEDY, user="gpu", session="zoo").result(timeout=120)
    assert len(gpu_torch.tokenize(first)) <= done.usage.cached_tokens < done.usage.prompt_tokens
    # The same prompt of another user is computed from scratch: no page is shared between users.
    scratch = gpu_torch.submit(second, GREEDY, user="another").result(timeout=120)
    assert scratch.usage.cached_tokens == 0 and scratch.usage.prompt_tokens == done.usage.prompt_tokens


def test_four_concurrent_streams_complete(gpu_torch):
    assert_streams_run_side_by_side(gpu_torch, [CHAT.format(q) for q in QUESTIONS], GREEDY, timeout=120)
