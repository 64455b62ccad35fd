"""GPU offload that can be checked without a GPU: HEARTH_GPU_LAYERS, the layer plan for the real
default model, the slot count from GPU memory (fed memory figures, sized by the model's own KV cache
shape), the errors every CUDA path gives on a CPU build, and what `python -m native` says about the
backends. tests/test_gpu.py runs the same on a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import llama_cpp as C
import pytest

from native import load_engine
from native.engine import default_parallel
from native.errors import DeviceUnavailable, InvalidSetting
from native.gguf_info import inspect_gguf
from native.hardware import Device, build_backends, device_memory, gpu_offload_supported
from native.offload import (
    GIB,
    GPU_MAX_SLOTS,
    GpuConfig,
    gpu_config,
    kv_bytes_per_slot,
    plan_offload,
    slots_for_memory,
)
from native.resolve import resolve_model

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
cpu_only = pytest.mark.skipif(
    gpu_offload_supported() or build_backends() != ["cpu"], reason="this llama.cpp build has a GPU backend"
)


@pytest.fixture(scope="module")
def smollm():
    """The default model's metadata: SmolLM2-135M, 30 blocks of 3 KV heads of 64 dimensions."""
    return inspect_gguf(resolve_model("default"))


# -- HEARTH_GPU_LAYERS --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "parsed"), [("12", 12), ("0", 0), (" 7 ", 7), ("all", "all")])
def test_gpu_layers_are_a_whole_number_or_all(monkeypatch, value: str, parsed: int | str) -> None:
    monkeypatch.setenv("HEARTH_GPU_LAYERS", value)
    assert gpu_config().gpu_layers == parsed


def test_gpu_layers_default_to_every_layer_and_an_argument_wins(monkeypatch) -> None:
    monkeypatch.delenv("HEARTH_GPU_LAYERS", raising=False)
    assert gpu_config().gpu_layers == "all"
    monkeypatch.setenv("HEARTH_GPU_LAYERS", "3")
    assert gpu_config(9).gpu_layers == 9


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "", "ALL layers", "10%"])
def test_bad_gpu_layers_are_refused_naming_what_is_accepted(monkeypatch, value: str) -> None:
    monkeypatch.setenv("HEARTH_GPU_LAYERS", value)
    with pytest.raises(InvalidSetting) as err:
        gpu_config()
    assert str(err.value) == (
        f"HEARTH_GPU_LAYERS={value!r} is not a number of layers: give a whole number from 0 up "
        "(the last layers of the model go to the GPU), or `all` (the default)"
    )
    assert isinstance(err.value, ValueError)


def test_bad_gpu_layers_stop_load_engine_before_any_model_loads(monkeypatch) -> None:
    monkeypatch.setenv("HEARTH_GPU_LAYERS", "many")
    with pytest.raises(InvalidSetting, match="HEARTH_GPU_LAYERS='many'"):
        load_engine("default", "cpu")


# -- the layer plan, on the real default model --------------------------------------------------------


def test_a_gpu_gets_every_layer_of_the_model_by_default(smollm) -> None:
    plan = plan_offload(Device("cuda"), smollm, GpuConfig())
    assert (plan.layers, plan.of, plan.n_gpu_layers, plan.blocks_on_gpu) == (31, 31, -1, 30)
    assert plan.describe() == "31 of 31 layers (30 blocks and the output)"
    # `cuda` spreads the layers over every CUDA device, as llama.cpp does by default.
    assert plan.model_params() == {"n_gpu_layers": -1, "split_mode": C.LLAMA_SPLIT_MODE_LAYER, "main_gpu": 0}


def test_cuda_n_keeps_the_whole_model_on_that_gpu(smollm) -> None:
    plan = plan_offload(Device("cuda", 1), smollm, GpuConfig())
    assert plan.model_params() == {"n_gpu_layers": -1, "split_mode": C.LLAMA_SPLIT_MODE_NONE, "main_gpu": 1}


def test_part_of_the_layers_go_to_the_gpu_output_layer_first(smollm) -> None:
    plan = plan_offload(Device("cuda", 0), smollm, GpuConfig(gpu_layers=10))
    assert (plan.layers, plan.n_gpu_layers, plan.blocks_on_gpu) == (10, 10, 9)
    assert plan.describe() == "10 of 31 layers (30 blocks and the output)"
    assert plan_offload(Device("cuda"), smollm, GpuConfig(gpu_layers=31)).blocks_on_gpu == 30


def test_more_layers_than_the_model_has_are_refused(smollm) -> None:
    with pytest.raises(InvalidSetting) as err:
        plan_offload(Device("cuda"), smollm, GpuConfig(gpu_layers=32))
    assert str(err.value) == (
        "HEARTH_GPU_LAYERS=32: SmolLM2-135M-Instruct.Q4_1.gguf has 31 layers (30 blocks and the output); "
        "give at most 31, or `all`"
    )


def test_the_cpu_takes_no_layers_and_refuses_to_be_given_some(smollm) -> None:
    for config in (GpuConfig(), GpuConfig(gpu_layers=0)):
        plan = plan_offload(Device("cpu"), smollm, config)
        assert (plan.layers, plan.n_gpu_layers) == (0, 0)
    with pytest.raises(
        DeviceUnavailable, match="HEARTH_GPU_LAYERS=5 puts layers on a GPU, but the model loads on cpu"
    ):
        plan_offload(Device("cpu"), smollm, GpuConfig(gpu_layers=5))


# -- slots from GPU memory ----------------------------------------------------------------------------


def test_a_slot_holds_the_kv_cache_of_the_offloaded_blocks_only(smollm) -> None:
    # 30 blocks x 3 KV heads x (64 + 64) dimensions x 2 bytes (f16) = 23,040 bytes a token.
    assert smollm.kv_bytes_per_token == 23_040 and smollm.block_count == 30
    every = plan_offload(Device("cuda"), smollm, GpuConfig())
    assert kv_bytes_per_slot(smollm, 4096, every) == 23_040 * 4096 == 90 * MIB
    part = plan_offload(Device("cuda"), smollm, GpuConfig(gpu_layers=10))
    assert kv_bytes_per_slot(smollm, 4096, part) == 9 * 90 * MIB // 30  # 9 blocks of 30
    output_only = plan_offload(Device("cuda"), smollm, GpuConfig(gpu_layers=1))
    assert kv_bytes_per_slot(smollm, 4096, output_only) == 0


def test_slots_fill_the_free_memory_after_a_headroom_between_a_floor_and_a_cap(smollm) -> None:
    slot = kv_bytes_per_slot(smollm, 4096, plan_offload(Device("cuda"), smollm, GpuConfig()))
    # An H200 (about 140 GiB): far more than the cap fits.
    assert slots_for_memory(139 * GIB, 140 * GIB, slot) == GPU_MAX_SLOTS == 32
    # An 8 GiB card with 2 GiB free after the weights: 1 GiB headroom leaves 1 GiB, 11 slots of 90 MiB.
    assert slots_for_memory(2 * GIB, 8 * GIB, slot) == 11
    # A 24 GiB card keeps a tenth (2.4 GiB) free: 3 GiB free leaves room for 6 slots.
    assert slots_for_memory(3 * GIB, 24 * GIB, slot) == 6
    # Too little for even one: one slot, and llama.cpp says if that does not fit.
    assert slots_for_memory(GIB + 10 * MIB, 8 * GIB, slot) == 1
    assert slots_for_memory(0, 8 * GIB, slot) == 1
    # Nothing of the cache on the GPU (only the output layer there): the memory does not bound it.
    assert slots_for_memory(0, 8 * GIB, 0) == GPU_MAX_SLOTS


def test_the_cpu_keeps_its_slots_one_per_2_gib(engine) -> None:
    if engine.device.is_gpu:
        pytest.skip("the shared engine runs on a GPU here")
    assert engine.parallel == default_parallel()
    assert engine.stats()["gpu_layers"] == 0
    assert device_memory(Device("cpu")) is None


# -- every CUDA path on a CPU build ------------------------------------------------------------------


CUDA_FIX = "build one with `make install CUDA=1`: llama-cpp-python with -DGGML_CUDA=on"


@cpu_only
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_load_engine_on_cuda_names_the_build_flag_and_the_devices(device: str) -> None:
    with pytest.raises(DeviceUnavailable) as err:
        load_engine("default", device)
    assert str(err.value) == (
        f"device '{device}' is not available: this llama.cpp build supports cpu only ({CUDA_FIX}); "
        "available: cpu"
    )


@cpu_only
def test_gpu_layers_on_a_cpu_build_name_the_build_flag(monkeypatch) -> None:
    monkeypatch.setenv("HEARTH_GPU_LAYERS", "12")
    with pytest.raises(DeviceUnavailable) as err:
        load_engine("default")  # auto: the cpu, on this build
    assert str(err.value) == (
        "HEARTH_GPU_LAYERS=12 puts layers on a GPU, but the model loads on cpu: device 'cuda' is not "
        f"available: this llama.cpp build supports cpu only ({CUDA_FIX}); available: cpu"
    )


@cpu_only
def test_a_cpu_build_reports_no_gpu_memory() -> None:
    assert device_memory(Device("cuda")) is None and device_memory(Device("cuda", 0)) is None


# -- python -m native --------------------------------------------------------------------------------


def run_native(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "native", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_python_m_native_lists_the_backends_and_the_layers_on_the_gpu() -> None:
    run = run_native("default", "--device", "cpu")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "backends" in lines
    cpu = next(line for line in lines if line.startswith("  llama.cpp cpu "))
    assert "avx" in cpu.split() or "sse3" in cpu.split(), cpu
    cuda = next(line for line in lines if line.startswith("  llama.cpp cuda "))
    if "cuda" not in build_backends():
        assert cuda == f"  llama.cpp cuda not in this build ({CUDA_FIX}); devices: cpu"
    torch = next(line for line in lines if line.startswith("  torch "))
    if importlib.util.find_spec("torch") is None:
        assert torch == "  torch         not installed: make install TORCH=1"
    else:
        import torch as t

        assert t.__version__ in torch
    assert "gpu layers      0 of 31 layers (30 blocks and the output)" in lines


@cpu_only
def test_python_m_native_refuses_cuda_in_one_line_naming_the_build_flag() -> None:
    run = run_native("default", "--device", "cuda")
    assert run.returncode == 1
    assert run.stderr == (
        f"error: device 'cuda' is not available: this llama.cpp build supports cpu only ({CUDA_FIX}); "
        "available: cpu\n"
    )


def test_python_m_native_refuses_bad_gpu_layers_in_one_line() -> None:
    run = run_native("default", HEARTH_GPU_LAYERS="half")
    assert run.returncode == 1
    assert (
        run.stderr.startswith("error: HEARTH_GPU_LAYERS='half' is not a number of layers")
        and run.stderr.count("\n") == 1
    )
