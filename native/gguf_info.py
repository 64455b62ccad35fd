"""Read a GGUF file's header and metadata before llama.cpp ever sees the file.

llama.cpp aborts or crashes on some malformed files, so `inspect_gguf` checks the magic, parses the
whole header, and makes sure the tensor data the header promises is really on disk.

The header is walked here with `struct` over an mmap, using the `gguf` package's constants (value
types, quantization block sizes, file types, architecture names). `gguf.GGUFReader` would build a
numpy view per array element: 2.4 s for SmolLM2's 49k-token vocabulary and 11 s for Gemma 3's 262k.
Walking only what we need takes milliseconds.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_VERSION,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
)

from native.errors import (
    EmptyModelFile,
    InvalidModelFile,
    ModelNotFound,
    NotAGGUFFile,
    TruncatedModelFile,
    UnsupportedArchitecture,
)

# Architectures gguf knows that are not language models llama.cpp can chat with.
_NOT_TEXT_MODELS = {"clip": "a vision projector (mmproj)"}
SUPPORTED_ARCHITECTURES: frozenset[str] = frozenset(MODEL_ARCH_NAMES.values()) - _NOT_TEXT_MODELS.keys()

_EXAMPLES = ("llama", "qwen3", "gemma3", "phi3", "mistral3")
_MAGIC = struct.pack("<I", GGUF_MAGIC)  # b"GGUF"
_SCALAR = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_TOKENS_KEY = "tokenizer.ggml.tokens"


@dataclass(frozen=True)
class ModelInfo:
    """What a GGUF file says about itself; every optional field is None when the file does not say."""

    path: Path
    file_size: int
    architecture: str
    name: str | None
    parameter_count: int | None
    quantization: str
    context_length: int | None
    sliding_window: int | None
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    add_bos_token: bool | None
    kv_bytes_per_token: int | None = None
    """Bytes of f16 keys and values one token takes in the cache, over all layers."""
    block_count: int | None = None
    """Transformer blocks (llama.cpp's n_layer); a GPU takes up to these plus the output layer."""


class _Truncated(Exception):
    """A read ran past the end of the file (internal; becomes TruncatedModelFile)."""


class _Header:
    """A cursor over the mapped file that reads GGUF header values."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated(f"header ends at byte {len(self.buf)} while reading byte {self.pos + size}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        start, end = self.skip_string()
        return self.buf[start:end].decode("utf-8", errors="replace")

    def skip_string(self) -> tuple[int, int]:
        """Moves past one string; returns the (start, end) offsets of its bytes."""
        length = self.unpack("<Q")
        start = self.pos
        if start + length > len(self.buf):
            raise _Truncated(f"a {length}-byte string at byte {start} runs past the end")
        self.pos = start + length
        return start, self.pos

    def value_type(self) -> GGUFValueType:
        raw = self.unpack("<I")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise InvalidModelFile(f"unknown value type {raw} at byte {self.pos - 4}") from None

    def value(self, vtype: GGUFValueType, key: str) -> Any:
        """Returns a scalar or string; arrays are skipped (None) except where a caller needs them."""
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype != GGUFValueType.ARRAY:
            return self.unpack(_SCALAR[vtype])
        item_type, count = self.value_type(), self.unpack("<Q")
        start = self.pos
        if item_type == GGUFValueType.STRING:
            for _ in range(count):  # each string carries its own length: walk them
                self.skip_string()
        elif item_type == GGUFValueType.ARRAY:
            raise InvalidModelFile(f"nested array in {key!r}")
        else:
            size = struct.calcsize(_SCALAR[item_type]) * count
            if self.pos + size > len(self.buf):
                raise _Truncated(f"array {key!r} of {count} items runs past the end")
            self.pos += size
        return (start, count) if key == _TOKENS_KEY else None

    def string_at(self, start: int, index: int) -> str:
        """Returns item `index` of a string array whose first item begins at `start`."""
        self.pos = start
        for _ in range(index):
            self.skip_string()
        return self.string()


def _parse(buf: mmap.mmap) -> tuple[dict[str, Any], list[tuple[str, int, int, int]], int]:
    """Returns (metadata, tensors as (name, n_elements, type, offset), data offset)."""
    h = _Header(buf)
    h.pos = 4
    version = h.unpack("<I")
    if version & 0xFFFF == 0:
        raise InvalidModelFile(f"big-endian GGUF (version field {version:#x}); llama.cpp reads little-endian")
    if not 2 <= version <= GGUF_VERSION:
        raise InvalidModelFile(f"GGUF version {version} is not one llama.cpp reads (2 to {GGUF_VERSION})")
    n_tensors, n_kv = h.unpack("<Q"), h.unpack("<Q")
    # Every kv and tensor entry takes at least 8 bytes: larger counts are garbage or a cut file.
    if (n_tensors + n_kv) * 8 > len(buf):
        raise _Truncated(f"header declares {n_tensors} tensors and {n_kv} keys, more than the file holds")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = h.string()
        meta[key] = h.value(h.value_type(), key)
    tensors = []
    for _ in range(n_tensors):
        name = h.string()
        n_dims = h.unpack("<I")
        if n_dims > 8:
            raise InvalidModelFile(f"tensor {name!r} has {n_dims} dimensions")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= h.unpack("<Q")
        ttype, offset = h.unpack("<I"), h.unpack("<Q")
        tensors.append((name, n_elements, ttype, offset))
    alignment = meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise InvalidModelFile(f"general.alignment is {alignment!r}")
    data_offset = -(-h.pos // alignment) * alignment
    # Token ids may come before the vocabulary in the header, so their text is looked up last.
    for role in ("bos", "eos"):
        meta[f"hearth.{role}_text"] = _token_text(h, meta, f"tokenizer.ggml.{role}_token_id")
    return meta, tensors, data_offset


def _token_text(h: _Header, meta: dict[str, Any], id_key: str) -> str | None:
    """Returns the text of the token whose id is stored under `id_key`, or None if absent."""
    token_id, tokens = meta.get(id_key), meta.get(_TOKENS_KEY)
    if not isinstance(token_id, int) or not tokens or not 0 <= token_id < tokens[1]:
        return None
    return h.string_at(tokens[0], token_id)


def _tensor_nbytes(name: str, n_elements: int, ttype: int) -> int:
    """Returns the bytes a tensor of this type and element count occupies."""
    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ValueError, KeyError):
        raise InvalidModelFile(f"tensor {name!r} has unknown type {ttype}") from None
    return n_elements // block * type_size


def _quantization(meta: dict[str, Any], tensors: list[tuple[str, int, int, int]]) -> str:
    """Returns the file type's name ("Q4_1"), else the type holding the most weights."""
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int):
        try:
            return LlamaFileType(file_type & ~LlamaFileType.GUESSED).name.split("_", 1)[1]
        except ValueError:
            pass  # a file type newer than our gguf package: the tensors still tell us
    weights: Counter[int] = Counter()
    for _, n_elements, ttype, _ in tensors:
        weights[ttype] += n_elements
    if not weights:
        return "unknown"
    ttype = weights.most_common(1)[0][0]
    try:
        return GGMLQuantizationType(ttype).name
    except ValueError:
        return f"type {ttype}"


def _check_architecture(path: Path, arch: Any) -> str:
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile(f"{path}: GGUF has no general.architecture; expected a model such as 'llama'")
    if arch in SUPPORTED_ARCHITECTURES:
        return arch
    why = (
        f"is {_NOT_TEXT_MODELS[arch]}, not a language model"
        if arch in _NOT_TEXT_MODELS
        else ("is not an architecture this llama.cpp knows")
    )
    examples = ", ".join(a for a in _EXAMPLES if a in SUPPORTED_ARCHITECTURES)
    raise UnsupportedArchitecture(
        f"{path}: architecture {arch!r} {why}; supported ones include {examples} "
        f"({len(SUPPORTED_ARCHITECTURES)} in all)"
    )


def inspect_gguf(path: str | Path) -> ModelInfo:
    """Returns the metadata of the GGUF file at `path`, after checking it is whole and loadable.

    Raises EmptyModelFile, NotAGGUFFile, TruncatedModelFile, UnsupportedArchitecture or another
    InvalidModelFile (all ValueErrors) for bad files, ModelNotFound for a missing one, and the OSError
    of `open` (PermissionError) when it cannot be read. Reads only the header, never the tensor data.
    """
    path = Path(path)
    if not path.exists():
        raise ModelNotFound(f"{path} does not exist; expected a GGUF model file")
    if path.is_dir():
        raise InvalidModelFile(f"{path} is a folder; expected a GGUF model file")
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise EmptyModelFile(f"{path}: file is empty (0 bytes); expected a GGUF model")
        f.seek(0)
        magic = f.read(4)
        if magic != _MAGIC:
            raise NotAGGUFFile(
                f"{path}: starts with {magic!r}, not the GGUF magic {_MAGIC!r}; expected a .gguf model file"
            )
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                meta, tensors, data_offset = _parse(buf)
                ends = (off + _tensor_nbytes(name, n, t) for name, n, t, off in tensors)
                data_end = data_offset + max(ends, default=0)
            except _Truncated as e:
                raise TruncatedModelFile(
                    f"{path}: truncated GGUF header ({e}); the file is {size} bytes, copy the file again"
                ) from None
            except Exception as e:  # garbage after a valid magic must never escape as a crash
                raise InvalidModelFile(f"{path}: corrupt GGUF header: {e}") from None
    if data_end > size:
        raise TruncatedModelFile(
            f"{path}: truncated: the header promises {data_end} bytes of data but the "
            f"file has {size}; copy the file again"
        )
    arch = _check_architecture(path, meta.get("general.architecture"))

    def typed(key: str, kind: type) -> Any:
        value = meta.get(key)
        return value if isinstance(value, kind) and not (kind is int and isinstance(value, bool)) else None

    return ModelInfo(
        path=path,
        file_size=size,
        architecture=arch,
        name=typed("general.name", str),
        parameter_count=typed("general.parameter_count", int) or sum(n for _, n, _, _ in tensors) or None,
        quantization=_quantization(meta, tensors),
        context_length=typed(f"{arch}.context_length", int),
        sliding_window=typed(f"{arch}.attention.sliding_window", int),
        chat_template=typed("tokenizer.chat_template", str),
        bos_token=meta["hearth.bos_text"],
        eos_token=meta["hearth.eos_text"],
        add_bos_token=typed("tokenizer.ggml.add_bos_token", bool),
        kv_bytes_per_token=_kv_bytes_per_token(arch, typed),
        block_count=typed(f"{arch}.block_count", int),
    )


def _kv_bytes_per_token(arch: str, typed: Any) -> int | None:
    """n_layer * n_head_kv * (key_length + value_length) * 2 bytes (f16), as llama.cpp sizes its cache."""
    layers = typed(f"{arch}.block_count", int)
    embd = typed(f"{arch}.embedding_length", int)
    heads = typed(f"{arch}.attention.head_count", int)
    heads_kv = typed(f"{arch}.attention.head_count_kv", int) or heads
    if not (layers and heads_kv and (embd and heads or typed(f"{arch}.attention.key_length", int))):
        return None
    head_dim = embd // heads if embd and heads else 0
    key = typed(f"{arch}.attention.key_length", int) or head_dim
    value = typed(f"{arch}.attention.value_length", int) or head_dim
    return layers * heads_kv * (key + value) * 2
