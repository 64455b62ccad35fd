"""Turn what a user typed (a path, a folder, a name, a catalog name or nothing) into one GGUF path.

How a spec is read, in order:

1. None or "default": the catalog's default model.
2. A *path*: an `os.PathLike`, or a string that contains a path separator, starts with `~` or ends
   with `.gguf`. If it exists (relative to the working directory), it is used as is: a file, or a
   folder holding one model. Paths the user typed may point anywhere.
3. Otherwise, and for a relative path string that does not exist from the working directory (so
   `org/model.gguf` can live in models/org/), the spec is a *name*: a catalog name
   (catalog names are reserved), else `<models_dir>/NAME.gguf`, else `<models_dir>/NAME` (a file or a
   folder holding one model). A name can never leave the models folder: every candidate is resolved
   (following symlinks) and must stay inside `models_dir.resolve()`, else UnsafeModelName.

Untrusted input (a REST request's `model` field) must go through `resolve_name`, which skips step 2.

A legacy GGML file found either way is converted to GGUF on its first use (native/ggml_legacy.py) and
its conversion returned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from native.catalog import CATALOG, DEFAULT_MODEL, existing_path, format_size, get_models_dir, materialize
from native.errors import AmbiguousModel, HearthError, ModelNotFound, UnsafeModelName
from native.ggml_legacy import ensure_gguf

# Shards of one split model: llama.cpp loads the first and finds the rest itself.
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelEntry:
    """One model a picker can offer."""

    name: str
    """What to pass to `resolve_model`."""
    path: Path | None
    """The file, or None for a catalog model not assembled yet."""
    size: int
    """File size in bytes (the catalog's figure until the file exists)."""
    source: Literal["catalog", "models/"]
    description: str = ""


def resolve_model(
    spec: str | os.PathLike[str] | None = None, *, models_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Returns the absolute path of the GGUF file `spec` designates (see the module docstring).

    Raises ModelNotFound (listing the available models), UnsafeModelName, or AmbiguousModel for a
    folder with several GGUF files. Catalog models are located or assembled on demand.
    """
    if spec is None:
        return resolve_name(DEFAULT_MODEL, models_dir=models_dir)
    is_path = isinstance(spec, os.PathLike) or _looks_like_path(spec)
    if is_path:
        path = Path(spec).expanduser()
        if path.exists():
            return ensure_gguf(_from_path(path), models_dir)
        if path.is_absolute() or isinstance(spec, os.PathLike):
            raise ModelNotFound(f"{path} does not exist; {_available(models_dir)}")
    try:
        return ensure_gguf(resolve_name(str(spec), models_dir=models_dir), models_dir)
    except ModelNotFound as e:
        if is_path:  # say that the working directory was tried too
            raise ModelNotFound(f"{spec} is not a file in {Path.cwd()}; {e}") from None
        raise


def resolve_name(name: str, *, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Returns the GGUF path of a catalog name or a model inside the models folder, never outside it."""
    if not name.strip():
        raise ModelNotFound(f"empty model name; {_available(models_dir)}")
    if "\0" in name:
        raise UnsafeModelName(f"model name {name!r} contains a NUL byte")
    if name in CATALOG:
        return materialize(name, models_dir)
    root = get_models_dir(models_dir)
    safe_root = _real(root)
    for candidate in (root / f"{name}.gguf", root / name):
        real = _real(candidate)
        if not real.is_relative_to(safe_root):
            raise UnsafeModelName(
                f"model name {name!r} leads outside the models folder {safe_root} "
                f"(to {real}); pass a path instead of a name to load a file elsewhere"
            )
        if real.is_file():
            return real
        if real.is_dir():
            return _from_folder(real, inside=safe_root)
    raise ModelNotFound(f"no model named {name!r} in {root} or the catalog; {_available(models_dir)}")


def list_models(models_dir: str | os.PathLike[str] | None = None) -> list[ModelEntry]:
    """Returns the catalog models, then the models in the models folder, for pickers and messages."""
    root = get_models_dir(models_dir)
    entries = []
    for entry in CATALOG.values():
        path = existing_path(entry, root)
        size = path.stat().st_size if path else entry.size
        entries.append(ModelEntry(entry.name, path, size, "catalog", entry.description))
    taken = {e.path.resolve() for e in entries if e.path}
    if root.is_dir():
        entries += [e for e in _folder_entries(root) if e.path not in taken and e.name not in CATALOG]
    return entries


def _folder_entries(root: Path) -> list[ModelEntry]:
    """Returns one entry per model a name can reach in `root` (unsafe symlinks and junk skipped)."""
    safe_root = _real(root)
    found = []
    for child in sorted(root.iterdir()):
        try:
            real = _real(child)
            if not real.is_relative_to(safe_root):
                continue
            if real.is_file() and child.suffix.lower() == ".gguf":
                found.append((child.stem, real))
            elif real.is_dir():
                try:
                    found.append((child.name, _from_folder(real, inside=safe_root)))
                except AmbiguousModel:  # each file stays reachable as "folder/file"
                    found += [(f"{child.name}/{p.stem}", p) for p in _ggufs(real, safe_root)]
        except (HearthError, OSError):
            continue
    return [ModelEntry(name, path, path.stat().st_size, "models/") for name, path in found]


def _looks_like_path(spec: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(s in spec for s in seps) or spec.startswith("~") or spec.lower().endswith(".gguf")


def _real(path: Path) -> Path:
    """Returns `path` made absolute with every symlink followed (it need not exist)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise ModelNotFound(f"{path}: cannot resolve ({e})") from None


def _from_path(path: Path) -> Path:
    real = _real(path)
    return _from_folder(real) if real.is_dir() else real


def _ggufs(folder: Path, inside: Path | None) -> list[Path]:
    """Returns the model files in `folder`, leaving out vision projectors (mmproj*).

    Raises UnsafeModelName when `inside` is given and a file is a symlink leading out of it.
    """
    files = [
        _real(p)
        for p in sorted(folder.iterdir())
        if p.suffix.lower() == ".gguf" and not p.name.lower().startswith("mmproj") and p.is_file()
    ]
    for p in files:
        if inside is not None and not p.is_relative_to(inside):
            raise UnsafeModelName(
                f"{folder} links to {p}, outside the models folder {inside}; "
                "pass a path instead of a name to load a file elsewhere"
            )
    return files


def _from_folder(folder: Path, inside: Path | None = None) -> Path:
    """Returns the one model in `folder` (for a split model, its first shard)."""
    files = _ggufs(folder, inside)
    if not files:
        raise ModelNotFound(f"{folder} holds no .gguf file")
    shards = [_SHARD.match(p.name) for p in files]
    if len(files) > 1 and all(shards) and len({m["stem"] for m in shards if m}) == 1:
        return min(files, key=lambda p: p.name)
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise AmbiguousModel(f"{folder} holds {len(files)} .gguf files ({names}); pass the path of one")
    return files[0]


def _available(models_dir: str | os.PathLike[str] | None) -> str:
    """Returns "available: NAME (SIZE, SOURCE), ..." for error messages."""
    try:
        entries = list_models(models_dir)
    except OSError:
        entries = []
    parts = []
    for e in entries:
        note = "" if e.path else ", not yet on disk"
        parts.append(f"{e.name} ({format_size(e.size)}, {e.source}{note})")
    return "available: " + (", ".join(parts) or "none")
