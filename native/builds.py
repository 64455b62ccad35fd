"""The llama.cpp builds on this machine: the one this process runs, and the others installed beside it.

A process holds one llama.cpp library, loaded when `llama_cpp` is first imported: from the folder in
LLAMA_CPP_LIB_PATH if set, else llama-cpp-python's own `llama_cpp/lib`. `make kernel-test ISA=avx2`
unpacks another build into `.venv/kernel-libs/KEY/llama_cpp/lib`. A build's kind is what its kernels
use: `cuda` (a GPU backend), else the widest x86 instruction set it was compiled for (`avx512`,
`avx2`, `avx`), else `basic`; these are the names ctransformers gives its libraries (`lib="avx2"`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from native.hardware import build_backends, build_features

LIB_ENV = "LLAMA_CPP_LIB_PATH"  # read by llama_cpp when it loads, at import
KINDS = ("basic", "avx", "avx2", "avx512", "cuda")


@dataclass(frozen=True)
class Build:
    kind: str
    folder: Path
    """The folder holding libllama (what LLAMA_CPP_LIB_PATH names)."""
    loaded: bool = False
    """Whether this process runs it."""

    def __str__(self) -> str:
        return f"{self.kind} at {self.folder}{' (in use)' if self.loaded else ''}"


def kind_of(features: set[str], backends: list[str]) -> str:
    """A build's kind from its compiled-in instruction sets and backends."""
    if "cuda" in backends:
        return "cuda"
    return next((isa for isa in ("avx512", "avx2", "avx") if isa in features), "basic")


def package_lib() -> Path:
    """llama-cpp-python's own library folder (found without importing it, which would load it)."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("llama_cpp is not installed: run `make install`")
    return (Path(spec.origin).parent / "lib").resolve()


def loaded_folder() -> Path:
    """The folder of the library this process runs (or will run, once llama_cpp is imported)."""
    chosen = os.environ.get(LIB_ENV)
    return Path(chosen).expanduser().resolve() if chosen else package_lib()


def loaded_build() -> Build:
    return Build(kind_of(build_features(), build_backends()), loaded_folder(), loaded=True)


def installed_builds() -> list[Build]:
    """Every build found: the one in use first, then llama-cpp-python's own and the unpacked ones.
    A build not in use is asked its kind by a short Python started on it (a second library cannot
    be loaded into this process)."""
    current = loaded_build()
    builds = [current]
    candidates = [package_lib(), *sorted(Path(sys.prefix).glob("kernel-libs/*/llama_cpp/lib"))]
    for folder in candidates:
        folder = folder.resolve()
        if folder != current.folder and any(folder.glob("libllama.*")):
            kind = _kind_in_subprocess(str(folder))
            if kind is not None:
                builds.append(Build(kind, folder))
    return builds


@cache
def _kind_in_subprocess(folder: str) -> str | None:
    script = (
        "from native.builds import kind_of; from native.hardware import build_backends, build_features; "
        "print(kind_of(build_features(), build_backends()))"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, LIB_ENV: folder}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    kind = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None
    return kind if kind in KINDS else None
