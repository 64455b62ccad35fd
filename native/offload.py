"""Offloading a model to a GPU: how many of its layers go, to which GPU, and how many slots fit.

llama.cpp counts a model's layers as its transformer blocks plus the output layer (SmolLM2-135M: 30 +
1); `n_gpu_layers=k` puts the last k on the GPU. With `offload_kqv` (llama.cpp's default, which Hearth
keeps) each offloaded block's KV cache lives beside it on the GPU, so the slots a GPU must hold are
the cache of its blocks only. `HEARTH_GPU_LAYERS` is read here, like the cache tiers' settings in
native/kv_tiers.py, so every caller of `load_engine` gets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import llama_cpp as C
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from native.errors import DeviceUnavailable, InvalidSetting
from native.gguf_info import ModelInfo
from native.hardware import Device, device_memory, unavailable_reason

log = logging.getLogger("hearth.offload")

GIB = 2**30
GPU_MAX_SLOTS = 32
"""At most this many slots from GPU memory: a decode step of a small model on a GPU costs about the
same for 1 or 32 sequences (it reads the weights once), but every slot adds to each step's
scheduling in Python, and the RAM tier keeps what slots cannot."""
GPU_HEADROOM_MIN = GIB
"""GPU memory left free beside the KV cache: llama.cpp's compute buffers (a 512-token batch's logits
alone are 512 x vocabulary floats) and whatever else runs on the GPU. A tenth of the GPU when larger."""


class GpuConfig(BaseSettings):
    """How much of the model goes to the GPU, from `HEARTH_GPU_LAYERS` (or an argument)."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    gpu_layers: Annotated[int, Field(ge=0)] | Literal["all"] = Field(
        "all",
        description="Layers on the GPU, counted as llama.cpp does (the blocks and the output layer; the "
        "last ones go); `all` (default) offloads every layer. Only with a GPU device.",
    )


def gpu_config(gpu_layers: int | str | None = None) -> GpuConfig:
    """The GPU settings: `gpu_layers` if given, else `HEARTH_GPU_LAYERS`, else every layer. Raises
    InvalidSetting, naming the accepted values, for anything but a whole number >= 0 or `all`."""
    try:
        return GpuConfig() if gpu_layers is None else GpuConfig(gpu_layers=gpu_layers)
    except ValidationError as e:
        given = e.errors()[0].get("input")
        raise InvalidSetting(
            f"HEARTH_GPU_LAYERS={given!r} is not a number of layers: give a whole number from 0 up "
            "(the last layers of the model go to the GPU), or `all` (the default)"
        ) from None


@dataclass(frozen=True)
class Offload:
    """Where a model's layers go: what the engine hands llama.cpp, and what reports print."""

    device: Device
    layers: int
    """Layers on the GPU, llama.cpp's count (blocks and output); 0 on the CPU."""
    of: int | None
    """The model's layers, blocks and output (None when its GGUF does not say)."""
    n_gpu_layers: int
    """llama.cpp's parameter: -1 is every layer."""

    @property
    def blocks_on_gpu(self) -> int:
        """Transformer blocks on the GPU (those with a KV cache): the output layer goes first."""
        return max(0, self.layers - 1)

    def model_params(self) -> dict[str, int]:
        """`llama_model_params` fields: `cuda` spreads layers over every CUDA device (llama.cpp's
        layer split), `cuda:N` keeps the whole model on device N."""
        if self.device.index is None:
            return {"n_gpu_layers": self.n_gpu_layers, "split_mode": C.LLAMA_SPLIT_MODE_LAYER, "main_gpu": 0}
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "split_mode": C.LLAMA_SPLIT_MODE_NONE,
            "main_gpu": self.device.index,
        }

    def describe(self) -> str:
        """`31 of 31 layers (30 blocks and the output)`, as `python -m native` prints it."""
        if self.of is None:
            return (
                f"{'every' if self.n_gpu_layers < 0 else self.layers} layer(s) of a model that does not say"
            )
        return f"{self.layers} of {self.of} layers ({self.of - 1} blocks and the output)"


def plan_offload(device: Device, info: ModelInfo, config: GpuConfig) -> Offload:
    """The layers `config` puts on `device` for this model. Raises DeviceUnavailable when layers are
    asked of a device that is not a GPU, and InvalidSetting when the model has fewer layers."""
    total = info.block_count + 1 if info.block_count else None
    wanted = config.gpu_layers
    if not device.is_gpu:
        if wanted not in ("all", 0):
            why = unavailable_reason("cuda")
            raise DeviceUnavailable(
                f"HEARTH_GPU_LAYERS={wanted} puts layers on a GPU, but the model loads on {device}"
                + (f": {why}" if why else "; ask for the GPU with HEARTH_DEVICE=cuda (or cuda:N)")
            )
        return Offload(device, 0, total, 0)
    if wanted == "all":
        return Offload(device, total or 0, total, -1)
    if total is not None and wanted > total:
        raise InvalidSetting(
            f"HEARTH_GPU_LAYERS={wanted}: {info.path.name} has {total} layers ({total - 1} blocks and the "
            f"output); give at most {total}, or `all`"
        )
    return Offload(device, wanted, total, wanted)


def kv_bytes_per_slot(info: ModelInfo, n_ctx: int, offload: Offload) -> int | None:
    """GPU bytes of one slot's f16 KV cache of `n_ctx` tokens: the offloaded blocks' share (None when
    the GGUF does not give the cache's shape)."""
    if not info.kv_bytes_per_token or not info.block_count:
        return None
    blocks = min(offload.blocks_on_gpu, info.block_count)
    return info.kv_bytes_per_token * n_ctx * blocks // info.block_count


def slots_for_memory(free: int, total: int, slot_bytes: int, *, cap: int = GPU_MAX_SLOTS) -> int:
    """Slots whose KV cache fits the GPU memory `free` after the weights, keeping a headroom (a tenth
    of `total`, at least 1 GiB); at least 1 (llama.cpp then says if even that does not fit) and at
    most `cap`."""
    if slot_bytes <= 0:  # no block on the GPU: its memory does not bound the slots
        return cap
    headroom = max(GPU_HEADROOM_MIN, total // 10)
    return max(1, min(cap, (free - headroom) // slot_bytes))


def gpu_parallel(info: ModelInfo, n_ctx: int, offload: Offload) -> int | None:
    """Slots for a model whose weights are already on the GPU, from the memory its driver reports
    free now; None when the build cannot report it or the GGUF does not give the cache's shape."""
    memory = device_memory(offload.device)
    slot_bytes = kv_bytes_per_slot(info, n_ctx, offload)
    if memory is None or slot_bytes is None:
        return None
    slots = slots_for_memory(*memory, slot_bytes)
    log.info(
        "%d slots of %d tokens on %s: %.1f of %.1f GiB free after the weights, %.1f MiB of KV cache a slot",
        slots,
        n_ctx,
        offload.device,
        memory[0] / GIB,
        memory[1] / GIB,
        slot_bytes / 2**20,
    )
    return slots
