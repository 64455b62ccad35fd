"""`python -m native [MODEL] [--device D] [--json]`: what would load, on what, and with how many threads.

Resolves the model (assembling a catalog model on first use), reads its GGUF metadata, and reports
the hardware (each GPU's free and total memory), the backends this install has (llama.cpp's CPU
build, its CUDA backend, PyTorch), the chosen device, the layers that go to the GPU
(`HEARTH_GPU_LAYERS`) and the thread count. Loads no model into llama.cpp.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from native.backends import backend_lines, backends_report
from native.catalog import MIB, format_size
from native.errors import HearthError
from native.gguf_info import ModelInfo, inspect_gguf
from native.hardware import choose_device, default_threads, hardware_report
from native.offload import gpu_config, plan_offload
from native.resolve import resolve_model

GIB = 1024 * MIB


def format_count(n: int | None) -> str:
    """Returns a parameter count the way model cards write it: 134.5M, 1.2B."""
    if n is None:
        return "unknown"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def _model_lines(info: ModelInfo) -> list[str]:
    template = f"yes ({len(info.chat_template)} characters)" if info.chat_template else "none in metadata"
    return [
        f"model           {info.path}",
        f"  name          {info.name or 'unknown'}",
        f"  architecture  {info.architecture}",
        f"  parameters    {format_count(info.parameter_count)}",
        f"  quantization  {info.quantization}",
        f"  file size     {format_size(info.file_size)}",
        f"  context       {info.context_length or 'unknown'} tokens",
        f"  sliding window {info.sliding_window or 'none'}",
        f"  chat template {template}",
        f"  bos / eos     {info.bos_token!r} / {info.eos_token!r} (add bos: {info.add_bos_token})",
    ]


def _device_detail(d: dict[str, Any]) -> str:
    """What a device is and, for a GPU, its memory: ` (NVIDIA H200, 139.2 of 140.4 GiB free)`."""
    parts = [d["description"]] if d["description"] else []
    if "memory_total" in d:
        parts.append(f"{d['memory_free'] / GIB:.1f} of {d['memory_total'] / GIB:.1f} GiB free")
    return f" ({', '.join(parts)})" if parts else ""


def _hardware_lines(report: dict[str, Any]) -> list[str]:
    cpu = report["cpu"]
    features = " ".join(name for name, present in cpu["features"].items() if present) or "no avx/fma/f16c"
    memory = f"{report['memory_total'] / 1024 / MIB:.1f} GiB" if report["memory_total"] else "unknown"
    devices = ", ".join(d["device"] + _device_detail(d) for d in report["devices"])
    return [
        "hardware",
        f"  cpu           {cpu['model'] or 'unknown'} ({features})",
        f"  cores         {cpu['physical_cores']} physical, {cpu['logical_cores']} logical, "
        f"{cpu['cores_available']} available to this process",
        f"  memory        {memory}",
        f"  gpu offload   {'yes' if report['gpu_offload_supported'] else 'no'}",
        f"  devices       {devices}",
        f"build           {report['system_info']}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the report; returns the exit status (1 with one line on stderr on any refusal)."""
    parser = argparse.ArgumentParser(prog="python -m native", description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="path, folder, name in models/, or catalog name (default)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, metal or vulkan")
    parser.add_argument("--models-dir", help="models folder (default: $HEARTH_MODELS_DIR or models/)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        info = inspect_gguf(resolve_model(args.model, models_dir=args.models_dir))
        device, threads = choose_device(args.device), default_threads()
        offload = plan_offload(device, info, gpu_config())
        report, backends = hardware_report(), backends_report()
    except (HearthError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    if args.json:
        model = dataclasses.asdict(info) | {"path": str(info.path)}
        layers = {"on_gpu": offload.layers, "of": offload.of}
        print(
            json.dumps(
                {
                    "model": model,
                    "hardware": report,
                    "backends": backends,
                    "device": str(device),
                    "gpu_layers": layers,
                    "threads": threads,
                },
                indent=2,
            )
        )
    else:
        print(
            "\n".join(
                [
                    *_model_lines(info),
                    *_hardware_lines(report),
                    *backend_lines(backends),
                    f"device          {device}",
                    f"gpu layers      {offload.describe()}",
                    f"threads         {threads}",
                ]
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
