"""GGUF inspection: real models' metadata, and every kind of bad file refused with its own error."""

from __future__ import annotations

import random
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native.catalog import materialize
from native.errors import (
    EmptyModelFile,
    HearthError,
    InvalidModelFile,
    ModelNotFound,
    NotAGGUFFile,
    TruncatedModelFile,
    UnsupportedArchitecture,
)
from native.gguf_info import ModelInfo, _Header, inspect_gguf


@pytest.fixture(scope="module")
def default_path() -> Path:
    return materialize("default")


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M assembled into a private models folder (never the repository's models/)."""
    return materialize("gemma-3-270m", tmp_path_factory.mktemp("models"), progress=False)


def write_gguf(path: Path, arch: str = "llama", *, tensors: bool = True) -> Path:
    """Writes a tiny but complete GGUF with gguf's own writer; returns its path."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_token_list(["<unk>", "<s>", "</s>", "a"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages }}")
    if tensors:
        writer.add_tensor("small", np.zeros((4, 8), dtype=np.float32))
        writer.add_tensor("large", np.zeros((16, 8), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf")


def test_default_model_metadata_is_smollm2_q4_1_with_chatml(default_path: Path) -> None:
    info = inspect_gguf(default_path)
    assert info.path == default_path
    assert info.file_size == default_path.stat().st_size == 98_362_432
    assert info.architecture == "llama"
    assert info.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert info.parameter_count == 134_515_008  # summed from tensor shapes: the file has no count
    assert info.quantization == "Q4_1"
    assert info.context_length == 8192
    assert info.sliding_window is None
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert (info.bos_token, info.eos_token, info.add_bos_token) == ("<|im_start|>", "<|im_end|>", False)


def test_gemma_metadata_has_sliding_window_and_no_chat_template(gemma_path: Path) -> None:
    info = inspect_gguf(gemma_path)
    assert info.architecture == "gemma3"
    assert info.name == "Gemma 3 270m"
    assert info.quantization == "Q4_K_M"
    assert info.context_length == 32768
    assert info.sliding_window == 512
    assert info.chat_template is None
    assert (info.bos_token, info.eos_token, info.add_bos_token) == ("<bos>", "<eos>", True)
    assert info.parameter_count == 268_098_176


def test_inspection_walks_a_large_vocabulary_without_decoding_it(gemma_path: Path, monkeypatch) -> None:
    # gguf.GGUFReader needs about 11 s for Gemma's 262k-token vocabulary (a numpy view per token);
    # the header walk skips each token's bytes and decodes only keys, names and the bos/eos texts.
    def refuse(*args, **kwargs):
        raise AssertionError("gguf.GGUFReader reads the whole vocabulary")

    decoded = []
    string = _Header.string
    monkeypatch.setattr(gguf, "GGUFReader", refuse)
    monkeypatch.setattr(_Header, "string", lambda self: decoded.append(1) or string(self))
    info = inspect_gguf(gemma_path)
    assert (info.bos_token, info.eos_token) == ("<bos>", "<eos>")  # found by walking the vocabulary
    assert len(decoded) < 2_000  # of 262,144 tokens


def test_metadata_of_a_gguf_written_by_gguf_writer_matches_what_was_written(tiny: Path) -> None:
    assert inspect_gguf(tiny) == ModelInfo(
        path=tiny,
        file_size=tiny.stat().st_size,
        architecture="llama",
        name="tiny",
        parameter_count=4 * 8 + 16 * 8,
        quantization="F16",  # no general.file_type: the type holding most weights
        context_length=128,
        sliding_window=None,
        chat_template="{{ messages }}",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=None,
    )


def test_random_bytes_are_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.gguf"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(NotAGGUFFile, match="GGUF magic"):
        inspect_gguf(path)


def test_a_text_file_is_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("this is a README, not a model\n")
    with pytest.raises(NotAGGUFFile, match=str(path)):
        inspect_gguf(path)


def test_an_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.touch()
    with pytest.raises(EmptyModelFile, match="empty"):
        inspect_gguf(path)


def test_a_missing_file_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        inspect_gguf(tmp_path / "absent.gguf")


def test_a_folder_is_not_a_model_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="folder"):
        inspect_gguf(tmp_path)


def test_first_half_of_a_real_model_is_truncated(tmp_path: Path, default_path: Path) -> None:
    half = tmp_path / "half.gguf"
    with default_path.open("rb") as src:
        half.write_bytes(src.read(default_path.stat().st_size // 2))
    with pytest.raises(TruncatedModelFile, match="promises 98362432 bytes"):
        inspect_gguf(half)


def test_a_copy_cut_inside_the_header_is_truncated(tmp_path: Path, default_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with default_path.open("rb") as src:
        cut.write_bytes(src.read(1000))
    with pytest.raises(TruncatedModelFile, match="truncated GGUF header"):
        inspect_gguf(cut)


def test_every_cut_of_a_small_gguf_is_refused_as_truncated(tmp_path: Path, tiny: Path) -> None:
    data = tiny.read_bytes()
    cut = tmp_path / "cut.gguf"
    for length in range(4, len(data)):
        cut.write_bytes(data[:length])
        with pytest.raises(TruncatedModelFile):
            inspect_gguf(cut)


def test_a_made_up_architecture_is_unsupported_and_supported_ones_are_named(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "made-up.gguf", arch="hearthformer")
    with pytest.raises(UnsupportedArchitecture, match="'hearthformer'") as err:
        inspect_gguf(path)
    assert "llama" in str(err.value) and "gemma3" in str(err.value)


def test_a_vision_projector_is_not_a_language_model(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "mmproj.gguf", arch="clip")
    with pytest.raises(UnsupportedArchitecture, match="vision projector"):
        inspect_gguf(path)


def test_a_gguf_without_tensors_is_accepted_with_unknown_parameter_count(tmp_path: Path) -> None:
    info = inspect_gguf(write_gguf(tmp_path / "vocab-only.gguf", tensors=False))
    assert info.parameter_count is None and info.quantization == "unknown"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=512))
def test_garbage_after_the_magic_is_refused_never_a_crash(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"GGUF" + tail)
    with pytest.raises(InvalidModelFile):
        inspect_gguf(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupting_bytes_of_a_valid_header_never_crashes(tmp_path: Path, data: st.DataObject) -> None:
    original = bytearray(write_gguf(tmp_path / "tiny.gguf").read_bytes())
    header_end = len(original) - (4 * 8 * 4 + 16 * 8 * 2)  # the tensors' bytes follow the header
    for _ in range(data.draw(st.integers(1, 8))):
        original[data.draw(st.integers(4, header_end - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(original))
    try:
        inspect_gguf(path)
    except HearthError as e:
        assert isinstance(e, InvalidModelFile)
