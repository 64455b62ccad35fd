"""Loading a model for the torch backend: what `load_engine(model, backend="torch")` reads.

Two kinds of model, both read from disk only (never a hub: `local_files_only`):

- a Hugging Face model folder: `config.json`, safetensors weights and the tokenizer's files;
- a GGUF file (anything `native.resolve` finds: a path, a name in models/, a catalog name), whose header
  is validated by `native.gguf_info` first and whose weights transformers then dequantizes
  (`from_pretrained(folder, gguf_file=...)`, through the `gguf` package's numpy dequantizers). The
  weights end up as plain float tensors: a Q4_1 file is computed in f32 here, where llama.cpp
  multiplies the quantized blocks directly.

torch and transformers are optional (`make install TORCH=1`): importing this module imports neither;
`require_torch` says how to install them when they are missing.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from native.errors import BackendUnavailable, DeviceUnavailable, InvalidModelFile, UnsupportedArchitecture
from native.gguf_info import ModelInfo, inspect_gguf
from native.hardware import Device
from native.resolve import resolve_model

log = logging.getLogger("hearth.engine")

TORCH_INSTALL = "make install TORCH=1 (or: .venv/bin/pip install -r requirements-torch.txt)"
_MODULES = ("torch", "transformers", "accelerate")  # accelerate: transformers needs it for GGUF files


def torch_missing() -> list[str]:
    """The packages of the torch backend that are not installed (empty: it can run)."""
    return [name for name in _MODULES if importlib.util.find_spec(name) is None]


def require_torch() -> None:
    """Raise BackendUnavailable, naming the install command, unless torch and transformers import."""
    missing = torch_missing()
    if missing:
        raise BackendUnavailable(
            f"the torch backend needs {', '.join(missing)}, which is not installed: run {TORCH_INSTALL}"
        )


def is_hf_folder(spec: object) -> bool:
    """True for a path to a Hugging Face model folder (it holds config.json)."""
    if not isinstance(spec, str | os.PathLike):
        return False
    path = Path(spec).expanduser()
    return path.is_dir() and (path / "config.json").is_file()


@dataclass(frozen=True)
class Source:
    """What to load: a model folder, and the GGUF file in it when the weights are GGUF."""

    path: Path
    """The GGUF file, or the model folder."""
    info: ModelInfo

    @property
    def gguf_file(self) -> str | None:
        return self.path.name if self.path.is_file() else None

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path


def find_source(model: str | os.PathLike[str] | None, models_dir: str | os.PathLike[str] | None) -> Source:
    """A Hugging Face folder as it is; anything else through `native.resolve` to a validated GGUF file."""
    if is_hf_folder(model):
        folder = Path(model).expanduser().resolve()  # type: ignore[arg-type]
        return Source(folder, folder_info(folder))
    path = resolve_model(model, models_dir=models_dir).resolve()
    return Source(path, inspect_gguf(path))


def folder_info(folder: Path) -> ModelInfo:
    """A `ModelInfo` for a Hugging Face folder, from config.json and tokenizer_config.json, so the faces
    (chat templates, stats) read it as they read a GGUF file's."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise InvalidModelFile(
            f"{folder} holds config.json but no *.safetensors weights: the torch backend loads safetensors "
            "folders (save one with model.save_pretrained(folder)) or GGUF files"
        )
    config = _read_json(folder / "config.json")
    tokenizer = _read_json(folder / "tokenizer_config.json")
    template = tokenizer.get("chat_template")
    jinja = folder / "chat_template.jinja"  # where recent transformers saves it
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    return ModelInfo(
        path=folder,
        file_size=sum(w.stat().st_size for w in weights),
        architecture=str(config.get("model_type", "unknown")),
        name=config.get("_name_or_path") or folder.name,
        parameter_count=None,
        quantization=str(config.get("torch_dtype") or config.get("dtype") or "unknown"),
        context_length=config.get("max_position_embeddings"),
        sliding_window=config.get("sliding_window"),
        chat_template=template if isinstance(template, str) else None,
        bos_token=_token_text(tokenizer.get("bos_token")),
        eos_token=_token_text(tokenizer.get("eos_token")),
        add_bos_token=tokenizer.get("add_bos_token"),
    )


def torch_device(requested: str | Device) -> str:
    """The torch device for `requested`: auto is the first CUDA GPU when torch sees one, else cpu."""
    import torch

    want = Device.parse(str(requested))
    if want.kind == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want.kind == "cpu":
        return "cpu"
    if want.kind != "cuda":
        raise DeviceUnavailable(f"the torch backend runs on cpu or cuda, not {want}")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"device {str(want)!r} is not available: torch {torch.__version__} sees no CUDA device "
            "(a CPU build of torch, or no GPU); use device cpu"
        )
    if want.index is not None and want.index >= torch.cuda.device_count():
        raise DeviceUnavailable(
            f"device {str(want)!r} is not available: torch sees {torch.cuda.device_count()}"
        )
    return str(want)


def load_weights(source: Source, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) on `device`, from disk only. f32 on the CPU: CPUs have no fast f16/bf16
    matmul here, and f32 keeps the dequantized GGUF weights as the file has them; bf16 on a GPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    where: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file:
        where["gguf_file"] = source.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, **where)
        model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=dtype, **where)
    except (ValueError, KeyError, NotImplementedError) as exc:
        # transformers names the architecture or quantization type it cannot read in these
        if source.gguf_file and "not supported" in str(exc).lower():
            raise UnsupportedArchitecture(
                f"transformers cannot dequantize {source.path.name} ({source.info.architecture}, "
                f"{source.info.quantization}): {exc}; load it with the llama.cpp backend instead"
            ) from None
        raise InvalidModelFile(
            f"transformers cannot load {source.path}: {type(exc).__name__}: {exc}"
        ) from None
    return model.to(device).eval(), tokenizer


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModelFile(f"{path} is not readable JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _token_text(token: object) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": ...}."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else None
