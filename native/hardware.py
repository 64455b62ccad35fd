"""What this machine and this llama.cpp build can do: CPU features, cores, memory, devices.

llama_cpp is imported inside the functions that need it: importing it loads the shared library.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from native.errors import DeviceUnavailable, InvalidDevice

CPU_FEATURES = ("avx", "avx2", "avx512", "fma", "f16c")
_CPUINFO_FLAG = {"avx": "avx", "avx2": "avx2", "avx512": "avx512f", "fma": "fma", "f16c": "f16c"}
GPU_KINDS = ("cuda", "metal", "vulkan")
# How to get a build with each GPU backend: Hearth's Makefile builds CUDA; the others by hand.
REBUILD_HINT = {
    "cuda": "build one with `make install CUDA=1`: llama-cpp-python with -DGGML_CUDA=on",
    "metal": "rebuild llama-cpp-python with -DGGML_METAL=on",
    "vulkan": "rebuild llama-cpp-python with -DGGML_VULKAN=on",
}
# Why a build with a GPU backend may still find no device of it.
_NO_DEVICE_HINT = {
    "cuda": " (is the NVIDIA driver loaded? `nvidia-smi -L` lists the GPUs; CUDA_VISIBLE_DEVICES may "
    "hide them)",
}
_ACCEPTED = "auto, cpu, cuda, cuda:N, metal, vulkan"


@dataclass(frozen=True)
class Device:
    """Where a model runs: `Device("cpu")`, `Device("cuda", 1)`; `str()` gives back the parsed form."""

    kind: str
    index: int | None = None

    @classmethod
    def parse(cls, text: str) -> Device:
        """Returns the device `text` names (auto, cpu, cuda, cuda:N, metal, vulkan; any case).

        Raises InvalidDevice (a ValueError) for anything else.
        """
        s = text.strip().lower() if isinstance(text, str) else ""
        if s in ("auto", "cpu", *GPU_KINDS):
            return cls(s)
        m = re.fullmatch(r"cuda:(\d+)", s)
        if m:
            return cls("cuda", int(m[1]))
        raise InvalidDevice(f"unknown device {text!r}; expected one of: {_ACCEPTED}")

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def is_gpu(self) -> bool:
        return self.kind in GPU_KINDS


# --- CPU and memory -----------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags as /proc/cpuinfo lists them ("avx2", "avx512f", ...); None without it."""
    flags_line = re.search(r"^flags\s*:(.*)$", _read("/proc/cpuinfo") or "", re.MULTILINE)
    return set(flags_line[1].split()) if flags_line else None


def cpu_features() -> dict[str, bool]:
    """Returns {avx, avx2, avx512, fma, f16c: bool} from /proc/cpuinfo, else from the build's info."""
    flags = cpu_flags()
    if flags is not None:
        return {name: _CPUINFO_FLAG[name] in flags for name in CPU_FEATURES}
    # Elsewhere, what the build was compiled to use is the best cheap answer.
    built = build_features()
    return {name: name in built for name in CPU_FEATURES}


def cpu_model() -> str | None:
    """Returns the CPU's marketing name ("AMD EPYC ..."), or None when the OS does not say."""
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo") or "", re.MULTILINE)
    return m[1].strip() if m else None


def logical_cores() -> int:
    """Returns the number of logical CPUs (hardware threads) of the machine."""
    return os.cpu_count() or 1


def _allowed_cpus() -> set[int] | None:
    """Returns the CPU ids this process may run on (affinity, cpusets), or None when unknown."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    return set(getaffinity(0)) if getaffinity else None


def _core_of(cpu: int) -> tuple[str, str] | None:
    """Returns (package id, core id) of a logical CPU from sysfs, or None when sysfs does not say."""
    topo = f"/sys/devices/system/cpu/cpu{cpu}/topology"
    package, core = _read(f"{topo}/physical_package_id"), _read(f"{topo}/core_id")
    return (package.strip(), core.strip()) if package is not None and core is not None else None


def physical_cores(cpus: set[int] | None = None) -> int:
    """Returns the number of physical cores among `cpus` (default: all logical CPUs of the machine).

    SMT siblings share a core, so they count once. Falls back to the logical count where the OS does
    not expose the topology.
    """
    cpus = cpus if cpus is not None else set(range(logical_cores()))
    cores = {_core_of(cpu) for cpu in cpus}
    if None in cores or not cores:
        return len(cpus) if cpus else logical_cores()
    return len(cores)


def _cgroup_cpu_limit() -> int | None:
    """Returns the CPU quota of this container (cgroup v2 cpu.max) rounded up, or None if unlimited."""
    quota = (_read("/sys/fs/cgroup/cpu.max") or "").split()
    if len(quota) == 2 and quota[0] != "max":
        return max(1, math.ceil(int(quota[0]) / int(quota[1])))
    return None


def default_threads() -> int:
    """Returns the number of threads to decode with: the physical cores this process may use.

    llama-cpp-python defaults to half the logical CPUs, which gives one thread on a two-core machine.
    More threads than physical cores (or than a container's CPU quota) slow decoding down.
    """
    threads = physical_cores(_allowed_cpus())
    limit = _cgroup_cpu_limit()
    return max(1, min(threads, limit) if limit else threads)


def total_memory() -> int | None:
    """Returns the machine's RAM in bytes, or None when the OS does not say."""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", _read("/proc/meminfo") or "", re.MULTILINE)
    if m:
        return int(m[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# --- the llama.cpp build ------------------------------------------------------------------------------


def system_info() -> str:
    """Returns llama.cpp's build summary ("CPU : SSE3 = 1 | AVX = 1 | ...")."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").strip()


def build_features() -> set[str]:
    """The CPU instruction sets this llama.cpp build was compiled to use ("avx2", "fma", "avx512", ...),
    read from its summary: what its kernels can run, whatever the CPU under it also offers."""
    return {name.lower() for name in re.findall(r"([A-Z][A-Z0-9_]*) = 1", system_info())}


@cache
def build_digest() -> str:
    """A hash of llama.cpp's shared libraries as installed: a saved KV state is only valid for the
    build that wrote it (another version, flags or patches may lay the state out differently)."""
    import llama_cpp

    package = Path(llama_cpp.__file__).parent
    h = hashlib.sha256(llama_cpp.__version__.encode())
    for path in sorted((package / "lib").glob("*")) + sorted(package.glob("*.so*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:32]


def gpu_offload_supported() -> bool:
    """Returns whether this llama.cpp build can offload layers to a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


@dataclass(frozen=True)
class _BackendDevice:
    device: Device
    description: str
    handle: int | None


def _kind_of(backend: str) -> str | None:
    """Returns the device kind of a ggml backend name ("CUDA", "ROCm", "Metal", ...), or None."""
    b = backend.lower()
    if b.startswith(("cuda", "rocm", "hip")):  # ROCm builds reuse the CUDA backend and device syntax
        return "cuda"
    return next((k for k in ("cpu", "metal", "vulkan") if b.startswith(k)), None)


@cache
def _ggml() -> ctypes.CDLL | None:
    """Returns ggml's shared library from llama_cpp's lib folder (already loaded by llama_cpp), or None.

    llama_cpp does not bind ggml's device registry, so we bind the eight calls we need ourselves.
    """
    import llama_cpp

    name = {"win32": "ggml.dll", "darwin": "libggml.dylib"}.get(sys.platform, "libggml.so")
    package = Path(llama_cpp.__file__).parent
    path = next((p for p in (package / "lib" / name, package / name) if p.exists()), None)
    if path is None:
        return None
    vp, size_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
    signatures = {  # from ggml-backend.h
        "ggml_backend_reg_count": (ctypes.c_size_t, []),
        "ggml_backend_reg_get": (vp, [ctypes.c_size_t]),
        "ggml_backend_reg_name": (ctypes.c_char_p, [vp]),
        "ggml_backend_dev_count": (ctypes.c_size_t, []),
        "ggml_backend_dev_get": (vp, [ctypes.c_size_t]),
        "ggml_backend_dev_description": (ctypes.c_char_p, [vp]),
        "ggml_backend_dev_backend_reg": (vp, [vp]),
        "ggml_backend_dev_memory": (None, [vp, size_p, size_p]),
    }
    try:
        lib = ctypes.CDLL(str(path))
        for fn, (restype, argtypes) in signatures.items():
            getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
    except (OSError, AttributeError):  # a build too old for the device registry
        return None
    return lib


def build_backends() -> list[str]:
    """Returns the device kinds compiled into this llama.cpp build, cpu first: ["cpu", "cuda"]."""
    lib = _ggml()
    if lib is not None:
        names = [
            lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
            for i in range(lib.ggml_backend_reg_count())
        ]
    else:  # the system info names the backends that report features ("CUDA : ARCHS = ... | CPU : ...")
        names = re.findall(r"(?:^|\|)\s*([A-Za-z][\w-]*) :", system_info())
    kinds = {_kind_of(n) for n in names} | {"cpu"}
    return [k for k in ("cpu", *GPU_KINDS) if k in kinds]


def _backend_devices() -> list[_BackendDevice]:
    """Returns every device llama.cpp can use, numbered per kind (cuda:0, cuda:1, ...)."""
    lib = _ggml()
    if lib is None:  # no registry to ask: assume one device per compiled-in backend
        return [_BackendDevice(Device(k), "", None) for k in build_backends()]
    found: list[_BackendDevice] = []
    for i in range(lib.ggml_backend_dev_count()):
        handle = lib.ggml_backend_dev_get(i)
        kind = _kind_of(lib.ggml_backend_reg_name(lib.ggml_backend_dev_backend_reg(handle)).decode())
        if kind is None:  # BLAS, RPC and other helpers: not a place to run a model
            continue
        index = None if kind == "cpu" else sum(d.device.kind == kind for d in found)
        description = lib.ggml_backend_dev_description(handle).decode("utf-8", errors="replace")
        found.append(_BackendDevice(Device(kind, index), description, handle))
    return found


def available_devices() -> list[Device]:
    """Returns the devices this build can use on this machine, CPU first: [cpu, cuda:0, ...]."""
    devices = [d.device for d in _backend_devices()]
    return devices if Device("cpu") in devices else [Device("cpu"), *devices]


def choose_device(requested: str | Device = "auto") -> Device:
    """Returns the device to load on: `auto` becomes the first GPU when the build offloads, else cpu.

    Raises InvalidDevice for a malformed string and DeviceUnavailable, naming what is available, when
    the build or the machine lacks the requested device.
    """
    want = Device.parse(str(requested))  # a hand-built Device("tpu") is refused like the string
    devices = available_devices()
    gpus = [d for d in devices if d.is_gpu]
    if want.kind == "auto":
        return Device(gpus[0].kind) if gpus and gpu_offload_supported() else Device("cpu")
    if want.kind == "cpu":
        return want
    same_kind = [d for d in gpus if d.kind == want.kind]
    available = ", ".join(str(d) for d in devices)
    if not same_kind:
        built = build_backends()
        if want.kind in built:
            raise DeviceUnavailable(
                f"device {str(want)!r} is not available: this llama.cpp build supports "
                f"{want.kind} but finds no {want.kind} device{_NO_DEVICE_HINT.get(want.kind, '')}; "
                f"available: {available}"
            )
        raise DeviceUnavailable(
            f"device {str(want)!r} is not available: this llama.cpp build supports {' and '.join(built)} "
            f"only ({REBUILD_HINT[want.kind]}); available: {available}"
        )
    numbered = [d.index for d in same_kind if d.index is not None]  # empty when the registry is unreadable
    if want.index is not None and numbered and want.index not in numbered:
        raise DeviceUnavailable(
            f"device {str(want)!r} is not available: this machine has {len(same_kind)} "
            f"{want.kind} device(s); available: {available}"
        )
    return want


def unavailable_reason(device: str | Device) -> str | None:
    """Why `device` cannot be used here (choose_device's message: the build flag, the devices that
    exist), or None when it can. Tests that need a GPU skip with this."""
    try:
        choose_device(device)
    except DeviceUnavailable as e:
        return str(e)
    return None


def _memory_of(d: _BackendDevice) -> tuple[int, int] | None:
    lib = _ggml()
    if lib is None or d.handle is None:
        return None
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    lib.ggml_backend_dev_memory(d.handle, ctypes.byref(free), ctypes.byref(total))
    return free.value, total.value


def device_memory(device: Device) -> tuple[int, int] | None:
    """(free, total) bytes of a GPU device as its driver reports them now (cudaMemGetInfo for CUDA);
    `cuda` without an index, which spreads layers over every CUDA device, sums them. None where the
    build cannot say (no device registry) or for the CPU, whose memory is `total_memory()`."""
    if not device.is_gpu:
        return None
    found = [
        m
        for d in _backend_devices()
        if d.device.kind == device.kind and device.index in (None, d.device.index)
        if (m := _memory_of(d)) is not None
    ]
    return (sum(f for f, _ in found), sum(t for _, t in found)) if found else None


def hardware_report() -> dict[str, Any]:
    """Returns everything above as a JSON-serialisable dict."""
    allowed = _allowed_cpus()
    devices = []
    for d in _backend_devices():
        entry: dict[str, Any] = {"device": str(d.device), "description": d.description}
        if d.device.is_gpu and (memory := _memory_of(d)) is not None:
            entry.update(memory_free=memory[0], memory_total=memory[1])
        devices.append(entry)
    return {
        "cpu": {
            "model": cpu_model(),
            "features": cpu_features(),
            "physical_cores": physical_cores(),
            "logical_cores": logical_cores(),
            "cores_available": len(allowed) if allowed is not None else logical_cores(),
        },
        "memory_total": total_memory(),
        "default_threads": default_threads(),
        "gpu_offload_supported": gpu_offload_supported(),
        "build_backends": build_backends(),
        "devices": devices,
        "auto_device": str(choose_device("auto")),
        "system_info": system_info(),
    }
