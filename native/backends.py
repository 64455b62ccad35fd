"""What this install can run a model with, one line each: llama.cpp's CPU build (the instruction
sets it was compiled for), its CUDA backend (compiled in or not, and why not), and PyTorch.

`python -m native` prints these. torch is imported here only, and only when asked: it takes seconds.
"""

from __future__ import annotations

import re
from typing import Any

from native.hardware import (
    REBUILD_HINT,
    available_devices,
    build_backends,
    build_features,
    system_info,
    unavailable_reason,
)

TORCH_INSTALL = "make install TORCH=1"


def cpu_build() -> str:
    """The instruction sets and helpers llama.cpp's CPU backend was compiled with ("avx2 fma ...")."""
    return " ".join(sorted(build_features())) or "no SIMD extensions"


def cuda_build() -> dict[str, Any]:
    """Whether llama.cpp's CUDA backend is compiled in, for which architectures, the CUDA devices it
    finds, and, when `cuda` cannot be used, why (the message `choose_device("cuda")` raises)."""
    compiled = "cuda" in build_backends()
    archs = re.search(r"CUDA : ARCHS = ([\d,]+)", system_info())
    return {
        "compiled": compiled,
        "archs": archs[1].split(",") if archs else [],
        "devices": [str(d) for d in available_devices() if d.kind == "cuda"],
        "unavailable": unavailable_reason("cuda"),
        "devices_here": [str(d) for d in available_devices()],
    }


def torch_status() -> dict[str, Any]:
    """PyTorch's version and the device it would use, or how to install it."""
    try:
        import torch
    except ImportError:
        return {"installed": False, "line": f"not installed: {TORCH_INSTALL}"}
    except Exception as e:  # a broken install (missing CUDA libraries) says why, not a traceback
        return {"installed": False, "line": f"installed but does not import ({type(e).__name__}: {e})"}
    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    else:
        device = "cpu (torch sees no CUDA device)"
    return {
        "installed": True,
        "version": torch.__version__,
        "device": device,
        "line": f"{torch.__version__}, {device}",
    }


def backends_report() -> dict[str, Any]:
    """All three as a JSON-serialisable dict."""
    return {"llama_cpp_cpu": cpu_build(), "llama_cpp_cuda": cuda_build(), "torch": torch_status()}


def backend_lines(report: dict[str, Any]) -> list[str]:
    """`backends_report()` as `python -m native` prints it."""
    cuda = report["llama_cpp_cuda"]
    if not cuda["compiled"]:
        cuda_line = f"not in this build ({REBUILD_HINT['cuda']}); devices: {', '.join(cuda['devices_here'])}"
    else:
        archs = f"architectures {', '.join(cuda['archs'])}" if cuda["archs"] else "compiled in"
        cuda_line = f"{archs}; " + (cuda["unavailable"] or f"devices: {', '.join(cuda['devices'])}")
    return [
        "backends",
        f"  llama.cpp cpu {report['llama_cpp_cpu']}",
        f"  llama.cpp cuda {cuda_line}",
        f"  torch         {report['torch']['line']}",
    ]
