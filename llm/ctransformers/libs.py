"""ctransformers' `lib=`: which llama.cpp build must run the model.

ctransformers loaded the library it was told (`"avx2"`, `"avx"`, `"basic"`, or a path). A process
runs one llama.cpp build, loaded when Hearth is imported (llama_cpp reads LLAMA_CPP_LIB_PATH then
only), so `lib` is checked against that build: the same one passes; another is refused, naming the
builds installed and how to start Python on the one asked for.
"""

from __future__ import annotations

from pathlib import Path

from llm import keywords
from native.builds import KINDS, LIB_ENV, installed_builds, loaded_build

# ctransformers' names; "avx512" (seed 002's comment offers it) and "cuda" name Hearth's builds too.
NAMES = KINDS


class LibraryUnavailable(RuntimeError):
    """The build `lib` asks for is not the one this process runs."""


def describe() -> str:
    """The build in use, in words."""
    return f"the {loaded_build()} build"


def require(lib: str | None) -> None:
    """Refuse `lib` unless it names the build this process runs (by kind, or by its folder or file)."""
    if lib is None:
        return
    current = loaded_build()
    if lib.lower() in NAMES:
        if lib.lower() == current.kind:
            return
        _refuse(lib, [b for b in installed_builds() if b.kind == lib.lower()])
    path = Path(lib).expanduser()
    if not path.exists():
        close = keywords.closest(lib.lower(), NAMES)
        raise ValueError(
            f"lib={lib!r} is neither a build ({', '.join(NAMES)})"
            + (f"; did you mean {close!r}?" if close else "")
            + " nor a path to a llama.cpp library"
        )
    folder = (path if path.is_dir() else path.parent).resolve()
    if folder != current.folder:
        _refuse(lib, [b for b in installed_builds() if b.folder == folder] or [])


def _refuse(lib: str, matching: list) -> None:
    builds = installed_builds()
    listed = "; ".join(str(b) for b in builds)
    if matching:
        chosen = matching[0].folder
        raise LibraryUnavailable(
            f"lib={lib!r}: this process runs the {builds[0].kind} build of llama.cpp, loaded when Hearth was "
            f"imported, and one process holds one build: start Python with {LIB_ENV}={chosen} to run "
            f"the one asked for (before anything imports llm or llama_cpp; `python -m llm.rest "
            f"--lib-path {chosen}` does it for the server), or leave lib out. Builds installed: {listed}"
        )
    raise LibraryUnavailable(
        f"lib={lib!r}: no such llama.cpp build is installed. Builds installed: {listed}. "
        "`make kernel-test ISA=avx2` unpacks an AVX2 build into .venv/kernel-libs/, `make install ISA=avx2` "
        "makes it the venv's own; or leave lib out to run on the build in use"
    )
