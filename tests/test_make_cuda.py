"""`make ... CUDA=1`: the flags it builds llama.cpp with, and how it stops, at once, on a machine without
an NVIDIA GPU, its driver or the CUDA compiler.

Each case runs make with a PATH of its own: the tools the Makefile calls, plus, where a case needs
them, stand-ins for `nvidia-smi` (printing the compute capabilities a GPU machine would) and `nvcc`,
the two things this machine cannot have for real. `-n` prints what would run and runs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = (
    "make",
    "sh",
    "grep",
    "sha256sum",
    "cut",
    "cat",
    "tr",
    "sort",
    "paste",
    "head",
    "ls",
    "sed",
    "printf",
    "echo",
)


def bin_dir(tmp_path: Path, *, compute_caps: str | None = None, nvcc: bool = False) -> Path:
    """A PATH folder holding the Makefile's tools, and fakes of the NVIDIA ones asked for."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        if (found := shutil.which(tool)) is not None:
            (folder / tool).symlink_to(found)
    if compute_caps is not None:
        fake = folder / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\nprintf '{compute_caps}'\n")
        fake.chmod(0o755)
    if nvcc:
        fake = folder / "nvcc"
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    return folder


def make(
    folder: Path, *args: str, cuda_home: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {"PATH": str(folder), "HOME": os.environ.get("HOME", "/root")}
    if cuda_home is not None:
        env["CUDA_HOME"] = str(cuda_home)
    started = time.monotonic()
    run = subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return run, time.monotonic() - started


@pytest.mark.parametrize("target", ["wheel", "install", "run"])
def test_without_nvidia_smi_cuda_stops_at_once_saying_what_is_missing(tmp_path, target: str) -> None:
    run, seconds = make(bin_dir(tmp_path), "-n", target, "CUDA=1", cuda_home=tmp_path)
    assert run.returncode == 2
    assert "CUDA=1: nvidia-smi is not installed, so this machine has no NVIDIA driver" in run.stderr
    assert "build for the CPU with `make install` (no CUDA=1)" in run.stderr
    assert run.stdout == ""  # nothing would have run: no download, no build
    assert seconds < 10


def test_a_driver_that_lists_no_gpu_stops_cuda(tmp_path) -> None:
    run, _ = make(bin_dir(tmp_path, compute_caps=""), "-n", "wheel", "CUDA=1", cuda_home=tmp_path)
    assert run.returncode == 2
    assert "CUDA=1: `nvidia-smi --query-gpu=compute_cap --format=csv,noheader` lists no GPU" in run.stderr


def test_without_nvcc_cuda_stops_naming_the_gpus_found(tmp_path) -> None:
    run, _ = make(bin_dir(tmp_path, compute_caps="9.0\\n"), "-n", "wheel", "CUDA=1", cuda_home=tmp_path)
    assert run.returncode == 2
    assert f"the CUDA compiler nvcc is neither on PATH nor in {tmp_path}/bin" in run.stderr
    assert "compute capability 90" in run.stderr and "Install the CUDA toolkit" in run.stderr


def test_cuda_builds_for_the_machines_gpu_architectures_only(tmp_path) -> None:
    folder = bin_dir(tmp_path, compute_caps="9.0\\n8.6\\n9.0\\n", nvcc=True)
    run, _ = make(folder, "-s", "cmake-args", "CUDA=1", cuda_home=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-3:] == [
        "-DGGML_CUDA=on",
        "-DCMAKE_CUDA_ARCHITECTURES=86;90",
        f"-DCMAKE_CUDA_COMPILER={folder}/nvcc",
    ]
    # The CPU's own flags stay: CUDA=1 adds to ISA=native or ISA=avx2.
    assert run.stdout.startswith("-DGGML_NATIVE=ON ")
    avx2, _ = make(folder, "-s", "cmake-args", "CUDA=1", "ISA=avx2", cuda_home=tmp_path)
    assert "-DGGML_NATIVE=OFF" in avx2.stdout and "-DGGML_AVX2=ON" in avx2.stdout
    assert avx2.stdout.split()[-3] == "-DGGML_CUDA=on"


def test_a_cuda_wheel_has_a_cache_folder_of_its_own(tmp_path) -> None:
    folder = bin_dir(tmp_path, compute_caps="9.0\\n", nvcc=True)

    def wheel_folder(*args: str) -> str:
        run, _ = make(folder, "-n", "wheel", *args, cuda_home=tmp_path)
        assert run.returncode == 0, run.stderr
        return next(word for word in run.stdout.split() if "/hearth/wheels/" in word).split(
            "/llama_cpp_python"
        )[0]

    cpu, cuda = wheel_folder(), wheel_folder("CUDA=1")
    assert cpu != cuda and cuda == wheel_folder("CUDA=1")


def test_cuda_takes_1_or_nothing(tmp_path) -> None:
    run, _ = make(bin_dir(tmp_path), "-n", "wheel", "CUDA=yes")
    assert run.returncode == 2 and "CUDA=yes: use CUDA=1" in run.stderr
