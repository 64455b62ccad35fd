"""The engine on an NVIDIA GPU: every layer offloaded by default, `python -m native` naming the GPU,
greedy replies from the cache equal to replies computed from scratch, eight streams at once, part of
the layers with HEARTH_GPU_LAYERS. They need a CUDA build (`make install CUDA=1`) and a GPU, and
skip elsewhere with the reason `native.hardware` gives; bench/gpu_check.sh runs them (`-m gpu`).

"From scratch" is a request of another user: no cache is ever shared between users
(tests/test_kv_tiers.py does the same on the CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from native import SamplingParams, load_engine
from native.engine import Engine
from native.gguf_info import inspect_gguf
from native.hardware import choose_device, device_memory, unavailable_reason
from native.kv_tiers import CacheConfig
from native.offload import GIB, GPU_MAX_SLOTS, GpuConfig
from native.resolve import resolve_model

WHY_NOT = unavailable_reason("cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

REPO = Path(__file__).resolve().parent.parent
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=32)
QUESTIONS = [
    "Write a long story about a dragon.",
    "List ten facts about the moon, one per line.",
    "Explain how a bicycle works to a child.",
]


def chat(*turns: str) -> str:
    """A chat-ml conversation (the default model's template) ending where the assistant speaks."""
    text = ""
    for i, turn in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        text += f"<|im_start|>{role}\n{turn}<|im_end|>\n"
    return text + "<|im_start|>assistant\n"


def new_engine(data: Path, parallel: int, **gpu) -> Engine:
    info = inspect_gguf(resolve_model("default").resolve())
    return Engine(
        info,
        choose_device("cuda"),
        n_ctx=2048,
        parallel=parallel,
        cache=CacheConfig(data_dir=data),
        gpu=GpuConfig(**gpu),
    )


@pytest.fixture
def engines():
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.close()


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_every_layer_and_the_kv_cache_go_to_the_gpu_by_default(device: str) -> None:
    engine = load_engine("default", device)
    assert engine.offload.of == 31  # 30 blocks and the output
    assert engine.stats()["gpu_layers"] == 31  # what llama.cpp reported it offloaded
    completion = engine.submit(chat(QUESTIONS[0]), GREEDY).result(120)
    assert completion.finish_reason in ("stop", "length") and completion.usage.completion_tokens > 0
    # Slots come from the GPU's free memory: on a GPU of more than 16 GiB the default model's 90 MiB
    # slots reach the cap.
    _, total = device_memory(engine.device)
    assert 1 <= engine.parallel <= GPU_MAX_SLOTS
    if total > 16 * GIB:
        assert engine.parallel == GPU_MAX_SLOTS


def test_python_m_native_reports_the_gpu_its_memory_and_the_layers() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "native", "default", "--device", "cuda"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    devices = next(line for line in run.stdout.splitlines() if line.startswith("  devices "))
    assert "cuda:0 (" in devices and "GiB free" in devices, devices
    assert "gpu layers      31 of 31 layers (30 blocks and the output)" in run.stdout
    assert "  llama.cpp cuda architectures " in run.stdout and "devices: cuda:0" in run.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "native", "default", "--device", "cuda", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(as_json.stdout)
    gpu = next(d for d in report["hardware"]["devices"] if d["device"] == "cuda:0")
    assert 0 < gpu["memory_free"] <= gpu["memory_total"]
    assert report["gpu_layers"] == {"on_gpu": 31, "of": 31}


@pytest.mark.parametrize("question", QUESTIONS)
def test_greedy_reply_from_the_cache_equals_the_one_from_scratch(tmp_path, engines, question: str) -> None:
    engine = new_engine(tmp_path, parallel=4)
    engines.append(engine)
    first = engine.submit(chat(question), GREEDY, user="u").result(120)
    follow_up = chat(question, first.text, "Now say it again, shorter.")
    cached = engine.submit(follow_up, GREEDY, user="u").result(120)
    scratch = engine.submit(follow_up, GREEDY, user=f"scratch-{uuid.uuid4()}").result(120)
    assert cached.usage.cached_tokens > 0 and scratch.usage.cached_tokens == 0
    assert cached.text == scratch.text


def test_eight_concurrent_streams_complete_in_shared_steps(tmp_path, engines) -> None:
    engine = new_engine(tmp_path, parallel=8)
    engines.append(engine)
    sampling = SamplingParams(temperature=0.0, max_new_tokens=48)
    streams = [engine.submit(chat(f"{QUESTIONS[i % 3]} ({i})"), sampling, user=f"u{i}") for i in range(8)]
    completions = [s.result(120) for s in streams]
    assert all(c.finish_reason in ("stop", "length") for c in completions)
    assert all(c.usage.completion_tokens > 0 and c.text for c in completions)
    # Decoded together: one step decodes a token of every stream, so the steps are about the longest
    # reply's tokens (plus the prompts' prefill), not the sum over the streams.
    longest = max(c.usage.completion_tokens for c in completions)
    assert engine.stats()["steps_total"] <= longest + 8


def test_hearth_gpu_layers_puts_part_of_the_model_on_the_gpu(tmp_path, engines, monkeypatch) -> None:
    monkeypatch.setenv("HEARTH_GPU_LAYERS", "10")
    info = inspect_gguf(resolve_model("default").resolve())
    engine = Engine(info, choose_device("cuda"), n_ctx=2048, parallel=2, cache=CacheConfig(data_dir=tmp_path))
    engines.append(engine)
    assert engine.offload.layers == 10 and engine.stats()["gpu_layers"] == 10
    completion = engine.submit(chat(QUESTIONS[1]), GREEDY).result(120)
    assert completion.finish_reason in ("stop", "length") and completion.usage.completion_tokens > 0
    # Shared engines are per layer count: the full one is another engine.
    assert load_engine("default", "cuda", gpu_layers=10) is not load_engine("default", "cuda")
