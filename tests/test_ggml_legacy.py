"""Legacy GGML files (the format before GGUF): a GGJTv3 llama file is converted to GGUF on first load
by llama.cpp's own converter, then loads and generates; what cannot be converted is refused with what
to do. The files are tiny llama models this test writes (random weights, one layer)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from native import SamplingParams, ggml_legacy, load_engine
from native.ggml_legacy import LegacyModelFile, legacy_format
from native.gguf_info import inspect_gguf
from native.resolve import resolve_model

N_VOCAB, N_EMBD, N_HEAD, N_LAYER, N_FF = 262, 32, 4, 1, 64
F32, Q4_0 = 0, 2  # ggml tensor types
WORDS = [b" the", b" cat", b"Hello"]

pytestmark = pytest.mark.skipif(
    not ggml_legacy.CONVERTER.is_file(), reason="the GGML converter is not installed: `make ggml-converter`"
)


def write_ggjt(path: Path, version: int = 3, tensor_type: int = F32) -> Path:
    """A llama model in GGJT (llama.cpp's last GGML format): header, hyperparameters, vocabulary with
    scores, then each tensor's header and its data aligned to 32 bytes. Dimensions are stored
    innermost first, as ggml's `ne`."""
    rng = np.random.default_rng(0)
    out = bytearray(b"tjgg" + struct.pack("<I", version))
    ftype = 0 if tensor_type == F32 else 2  # ALL_F32 or MOSTLY_Q4_0
    out += struct.pack("<7I", N_VOCAB, N_EMBD, 256, N_HEAD, N_LAYER, N_EMBD // N_HEAD, ftype)
    vocab = [b"", b"", b""] + [bytes([i]) for i in range(256)] + WORDS
    for i, text in enumerate(vocab):
        out += struct.pack("<I", len(text)) + text + struct.pack("<f", -float(i))
    tensors: list[tuple[str, tuple[int, ...]]] = [("tok_embeddings.weight", (N_EMBD, N_VOCAB))]
    for b in range(N_LAYER):
        for w in ("wq", "wk", "wv", "wo"):
            tensors.append((f"layers.{b}.attention.{w}.weight", (N_EMBD, N_EMBD)))
        tensors += [
            (f"layers.{b}.attention_norm.weight", (N_EMBD,)),
            (f"layers.{b}.feed_forward.w1.weight", (N_EMBD, N_FF)),
            (f"layers.{b}.feed_forward.w2.weight", (N_FF, N_EMBD)),
            (f"layers.{b}.feed_forward.w3.weight", (N_EMBD, N_FF)),
            (f"layers.{b}.ffn_norm.weight", (N_EMBD,)),
        ]
    tensors += [("norm.weight", (N_EMBD,)), ("output.weight", (N_EMBD, N_VOCAB))]
    for name, dims in tensors:
        kind = F32 if len(dims) == 1 else tensor_type
        out += struct.pack("<3I", len(dims), len(name), kind) + struct.pack(f"<{len(dims)}I", *dims)
        out += name.encode()
        out += b"\0" * (-len(out) % 32)
        count = int(np.prod(dims))
        if kind == F32:
            values = np.ones(count) if len(dims) == 1 else rng.normal(0, 0.02, count)
            out += values.astype("<f4").tobytes()
        else:  # Q4_0: 32 weights in 18 bytes (an f16 scale, 16 bytes of nibbles)
            out += bytes(count // 32 * 18)
    path.write_bytes(bytes(out))
    return path


def test_a_ggjt_v3_llama_file_is_converted_on_first_load_then_runs(tmp_path, caplog):
    legacy = write_ggjt(tmp_path / "tiny-llama.ggmlv3.f32.bin")
    assert legacy_format(legacy) == "GGJTv3"
    with caplog.at_level(logging.INFO, logger="hearth"):
        engine = load_engine(str(legacy), "cpu", n_ctx=128, n_threads=1, parallel=1)
    converted = tmp_path / "tiny-llama.ggmlv3.f32.gguf"
    assert engine.info.path == converted and converted.is_file()
    assert not (tmp_path / "tiny-llama.ggmlv3.f32.gguf.partial").exists()
    progress = [r.getMessage() for r in caplog.records if "converting" in r.getMessage()]
    assert any("Adding 12 tensor(s)" in line for line in progress), progress  # the converter's stages
    info = inspect_gguf(converted)
    assert info.architecture == "llama" and info.context_length == 2048
    completion = engine.submit("Hello the cat", SamplingParams(temperature=0, max_new_tokens=4)).result(60)
    assert completion.finish_reason in ("length", "stop") and completion.usage.prompt_tokens > 0
    # A second load finds the conversion: nothing is converted again.
    stamp = converted.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hearth"):
        assert resolve_model(str(legacy)) == converted
    assert converted.stat().st_mtime_ns == stamp
    assert "using its conversion" in caplog.text and "converting the legacy" not in caplog.text


def test_a_read_only_folder_converts_into_the_models_folder(tmp_path, monkeypatch):
    source = tmp_path / "readonly"
    source.mkdir()
    legacy = write_ggjt(source / "tiny.ggmlv3.f32.bin")
    models = tmp_path / "models"
    monkeypatch.setenv("HEARTH_MODELS_DIR", str(models))
    # Root writes into a 0555 folder anyway: where the suite runs as root, the folder's permission is
    # the one thing faked; everywhere else the real permission bits decide.
    source.chmod(0o555)
    writable = ggml_legacy._writable
    monkeypatch.setattr(ggml_legacy, "_writable", lambda folder: folder != source and writable(folder))
    try:
        assert resolve_model(str(legacy)) == models / "tiny.ggmlv3.f32.gguf"
        assert not (source / "tiny.ggmlv3.f32.gguf").exists()
        assert inspect_gguf(models / "tiny.ggmlv3.f32.gguf").architecture == "llama"
    finally:
        source.chmod(0o755)


def test_what_cannot_be_converted_is_refused_with_what_to_do(tmp_path, monkeypatch):
    # GGJTv2 changed Q4 and Q8 quantizations: llama.cpp's converter refuses those files.
    old = write_ggjt(tmp_path / "old.ggmlv2.q4_0.bin", version=2, tensor_type=Q4_0)
    with pytest.raises(LegacyModelFile) as refused:
        resolve_model(str(old))
    assert "not eligible for conversion" in str(refused.value) and "GGUF edition" in str(refused.value)
    assert not (tmp_path / "old.ggmlv2.q4_0.gguf").exists()
    assert not (tmp_path / "old.ggmlv2.q4_0.gguf.partial").exists()
    # Without the converter installed: the command that installs it.
    monkeypatch.setattr(ggml_legacy, "CONVERTER", tmp_path / "missing.py")
    with pytest.raises(LegacyModelFile, match="make ggml-converter"):
        resolve_model(str(write_ggjt(tmp_path / "new.ggmlv3.f32.bin")))
