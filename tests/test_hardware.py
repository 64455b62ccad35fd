"""Hardware detection, device strings, device choice on this CPU-only build, and `python -m native`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from native.__main__ import format_count
from native.errors import DeviceUnavailable, InvalidDevice
from native.hardware import (
    CPU_FEATURES,
    Device,
    available_devices,
    build_backends,
    choose_device,
    cpu_features,
    default_threads,
    gpu_offload_supported,
    hardware_report,
    logical_cores,
    physical_cores,
    system_info,
    total_memory,
    unavailable_reason,
)

REPO = Path(__file__).resolve().parent.parent
cpu_only = pytest.mark.skipif(
    gpu_offload_supported() or build_backends() != ["cpu"], reason="this llama.cpp build has a GPU backend"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", Device("auto")),
        ("cpu", Device("cpu")),
        ("CPU", Device("cpu")),
        ("  cuda \n", Device("cuda")),
        ("cuda:0", Device("cuda", 0)),
        ("CUDA:3", Device("cuda", 3)),
        ("metal", Device("metal")),
        ("Vulkan", Device("vulkan")),
    ],
)
def test_device_parse_accepts_the_documented_forms(text: str, expected: Device) -> None:
    assert Device.parse(text) == expected


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "metal", "vulkan"])
def test_device_str_round_trips(text: str) -> None:
    assert str(Device.parse(text)) == text


@pytest.mark.parametrize(
    "text", ["", " ", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1:2", "cpu:0", "metal:1", "rocm", "cuda 0"]
)
def test_device_parse_refuses_anything_else_naming_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidDevice, match="auto, cpu, cuda, cuda:N, metal, vulkan") as err:
        Device.parse(text)
    assert isinstance(err.value, ValueError)


def test_cpu_is_always_available_and_chosen_as_asked() -> None:
    assert available_devices()[0] == Device("cpu")
    assert choose_device("cpu") == choose_device(Device("cpu")) == Device("cpu")


@cpu_only
def test_auto_picks_cpu_on_a_cpu_only_build() -> None:
    assert choose_device() == Device("cpu")
    assert available_devices() == [Device("cpu")]


@cpu_only
@pytest.mark.parametrize(
    ("device", "how"),
    [
        ("cuda", "build one with `make install CUDA=1`: llama-cpp-python with -DGGML_CUDA=on"),
        ("cuda:1", "build one with `make install CUDA=1`: llama-cpp-python with -DGGML_CUDA=on"),
        ("metal", "rebuild llama-cpp-python with -DGGML_METAL=on"),
        ("vulkan", "rebuild llama-cpp-python with -DGGML_VULKAN=on"),
    ],
)
def test_a_gpu_the_build_lacks_is_refused_naming_what_is_available(device: str, how: str) -> None:
    with pytest.raises(DeviceUnavailable) as err:
        choose_device(device)
    assert str(err.value) == (
        f"device '{device}' is not available: this llama.cpp build supports cpu only ({how}); available: cpu"
    )
    assert unavailable_reason(device) == str(err.value)


def test_nothing_stands_in_the_way_of_the_cpu() -> None:
    assert unavailable_reason("cpu") is None and unavailable_reason("auto") is None


def test_a_malformed_device_is_invalid_not_unavailable() -> None:
    with pytest.raises(InvalidDevice):
        choose_device("gpu0")


def test_default_threads_are_physical_cores_within_the_logical_count() -> None:
    assert 1 <= default_threads() <= physical_cores() <= logical_cores()


def test_cpu_features_are_the_five_named_booleans() -> None:
    features = cpu_features()
    assert tuple(features) == CPU_FEATURES == ("avx", "avx2", "avx512", "fma", "f16c")
    assert all(isinstance(v, bool) for v in features.values())
    if features["avx2"]:
        assert features["avx"]


def test_total_memory_is_a_plausible_byte_count() -> None:
    memory = total_memory()
    assert memory is not None and memory > 256 * 1024 * 1024


def test_system_info_is_llama_cpp_build_summary() -> None:
    assert system_info().startswith("CPU : ")


def test_hardware_report_is_json_with_the_documented_keys() -> None:
    report = json.loads(json.dumps(hardware_report()))
    assert set(report) == {
        "cpu",
        "memory_total",
        "default_threads",
        "gpu_offload_supported",
        "build_backends",
        "devices",
        "auto_device",
        "system_info",
    }
    assert set(report["cpu"]) == {"model", "features", "physical_cores", "logical_cores", "cores_available"}
    assert report["default_threads"] == default_threads()
    assert report["devices"][0]["device"] == "cpu"


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (134_515_008, "134.5M"),
        (268_098_176, "268.1M"),
        (7_241_732_096, "7.2B"),
        (950, "950"),
        (None, "unknown"),
    ],
)
def test_parameter_counts_print_like_model_cards(n: int | None, text: str) -> None:
    assert format_count(n) == text


def run_native(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "native", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_python_m_native_reports_model_path_metadata_and_threads() -> None:
    run = run_native()
    assert run.returncode == 0, run.stderr
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in run.stdout
    for expected in (
        "architecture  llama",
        "parameters    134.5M",
        "quantization  Q4_1",
        "file size     93.8 MiB",
        "device          cpu",
        "threads",
    ):
        assert expected in run.stdout


def test_python_m_native_json_is_machine_readable() -> None:
    run = run_native("default", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["model"]["eos_token"] == "<|im_end|>"
    assert report["threads"] == default_threads()
    assert report["hardware"]["cpu"]["features"] == cpu_features()


@pytest.mark.parametrize("args", [("--device", "gpu"), ("no-such-model",)])
def test_python_m_native_errors_are_one_line_without_traceback(args: tuple[str, ...]) -> None:
    run = run_native(*args)
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
