"""Legacy GGML model files (llama.cpp's format before GGUF, 2023): converted to GGUF on first load.

Today's llama.cpp reads GGUF only. A GGML, GGMF or GGJT llama file (TheBloke's `*.ggmlv3.*.bin`, the
kind seed 002's tutorial downloads) is converted once, by llama.cpp's own
`convert_llama_ggml_to_gguf.py` from the llama-cpp-python sdist the venv's build came from (`make
install` copies it to `.venv/share/hearth/`; `ggml_converter_shim.py` fits it to today's `gguf`
package) and the `gguf` package, into `NAME.gguf` beside the
original, or into the models folder when that folder cannot be written. A later load finds the
converted file and skips the work. What cannot be converted is refused with what to do instead.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
from pathlib import Path

from native.catalog import get_models_dir
from native.errors import InvalidModelFile

log = logging.getLogger("hearth.engine")

# The first four bytes of each legacy format: the uint32s 'ggml', 'ggmf', 'ggjt', stored little-endian.
FORMATS = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT"}
CONVERTER = Path(sys.prefix) / "share" / "hearth" / "convert_llama_ggml_to_gguf.py"
GGUF_MODELS = "the GGUF edition of the model (TheBloke publishes one beside each GGML repository: *-GGUF)"


class LegacyModelFile(InvalidModelFile):
    """A GGML-era file that could not be converted; the message says what to do instead."""


def legacy_format(path: Path) -> str | None:
    """ "GGJTv3" and the like for a legacy GGML file, None for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return None
    name = FORMATS.get(head[:4])
    if name is None:
        return None
    version = struct.unpack("<I", head[4:8])[0] if name != "GGML" and len(head) == 8 else 1
    return f"{name}v{version}"


def ensure_gguf(path: Path, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """`path` itself, unless it is a legacy GGML file: then its GGUF conversion, made now if needed."""
    kind = legacy_format(path) if path.is_file() else None
    if kind is None:
        return path
    for target in _targets(path, models_dir):
        if target.is_file() and target.stat().st_mtime >= path.stat().st_mtime:
            log.info("%s is a legacy %s file: using its conversion %s", path.name, kind, target)
            return target
    target = next((t for t in _targets(path, models_dir) if _writable(t.parent)), None)
    if target is None:
        raise LegacyModelFile(
            f"{path} is a legacy {kind} file, and neither its folder nor the models folder can be written "
            f"to hold its GGUF conversion; make one writable, or download {GGUF_MODELS}"
        )
    convert(path, target, kind)
    return target


def convert(source: Path, target: Path, kind: str) -> None:
    """Run llama.cpp's converter, logging its progress; the result appears under `target` only whole."""
    if not CONVERTER.is_file():
        raise LegacyModelFile(
            f"{source} is a legacy {kind} file, which today's llama.cpp does not read, and the converter "
            f"that turns it into GGUF is not installed ({CONVERTER}): run `make ggml-converter` "
            f"(or `make install`), then load it again; or download {GGUF_MODELS}"
        )
    partial = target.with_name(target.name + ".partial")
    shim = Path(__file__).with_name("ggml_converter_shim.py")  # fits the converter to today's gguf
    command = [sys.executable, str(shim), str(CONVERTER), "--input", str(source), "--output", str(partial)]
    command += _hints(source)
    log.info("converting the legacy %s file %s to GGUF: %s", kind, source.name, target)
    # NO_LOCAL_GGUF: the converter then uses the installed `gguf` package, not an sdist's gguf-py.
    env = {**os.environ, "NO_LOCAL_GGUF": "1"}
    lines: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout:  # type: ignore[union-attr]
            line = line.rstrip()
            if line.strip():
                lines.append(line)
                stage = line.split(":", 2)[-1].strip()  # after the converter's "INFO:ggml-to-gguf:"
                if stage.startswith("* ") or stage.startswith("gguf: write"):  # scan, params, vocab, tensors
                    log.info("converting %s: %s", source.name, stage)
    if p.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        reason = next(
            (ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else ""
        )
        raise LegacyModelFile(
            f"{source}: converting this legacy {kind} file to GGUF failed ({reason.strip()}); only llama "
            f"models convert, and GGJTv2 files not quantized Q4/Q8; download {GGUF_MODELS}"
        )
    os.replace(partial, target)
    log.info("converted %s to %s (%.0f MiB)", source.name, target, target.stat().st_size / 2**20)


def _targets(path: Path, models_dir: str | os.PathLike[str] | None) -> list[Path]:
    name = path.with_suffix(".gguf").name
    return [path.with_suffix(".gguf"), get_models_dir(models_dir) / name]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _hints(source: Path) -> list[str]:
    """The converter cannot tell Llama 2 from Llama 1: their norm epsilon differs (1e-5, 1e-6), and 70B
    groups 8 query heads per key. The file name (TheBloke's `llama-2-70b-chat.ggmlv3...`) tells."""
    name = source.name.lower().replace("_", "-")
    hints = ["--eps", "1e-5"] if "llama-2" in name or "llama2" in name else []
    return hints + (["--gqa", "8"] if "70b" in name else [])
