"""Hearth's Q4_1 matmul kernel (native/patches/hearth-q4_1-matmul.patch) computes what llama.cpp's does.

The kernel reads each weight block once for a tile of tokens instead of once per token; it must keep
the stock kernel's arithmetic exactly. Two child processes decode the same chunks on the default model
(Q4_1), one with the kernel and one with `HEARTH_Q41_OFF=1`, and every logit must agree bit for bit:
chunks of 1, 2, 3, 5, 15 and 64 tokens cover every tile shape (2 rows x 1-4 tokens, and a single
token's one-row path) and the tile edges of a 64-token chunk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from native.hardware import build_features

pytestmark = pytest.mark.skipif(
    not {"avx2", "fma"} <= build_features(),
    reason="the kernel is built into x86 builds with AVX2 and FMA only; other builds run llama.cpp's own",
)

ROOT = Path(__file__).resolve().parent.parent
CHUNKS = [1, 2, 3, 5, 15, 64]

CHILD = """
import hashlib, json, sys
from native.llama import Batch, Context, Model
from native.resolve import resolve_model

model = Model(resolve_model("default"))
ctx = Context(model, n_ctx=2048, n_batch=512, n_seq_max=1, n_threads=2)
batch = Batch(512)
tokens = model.tokenize("A river runs through the old town, past the mill and the bridge. " * 30)
digests = {}


def decode(start, size):
    batch.clear()
    for i in range(size):
        batch.add(tokens[start + i], start + i, 0, True)
    ctx.decode(batch)
    return b"".join(ctx.logits(i) for i in range(size))


digests["history"] = hashlib.sha256(decode(0, 300)).hexdigest()  # 300 tokens: 16-row tiles, edges
for n in json.loads(sys.argv[1]):
    ctx.forget(0, 300)
    digests[n] = hashlib.sha256(decode(300, n)).hexdigest()
print(json.dumps(digests))
"""


def _digests(**env: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "HEARTH_Q41_OFF"} | env
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(CHUNKS)],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_kernel_is_built_in():
    import llama_cpp

    # Where llama_cpp loads its libraries from (it honours LLAMA_CPP_LIB_PATH, as a build under test may).
    folder = os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib"
    library = next(Path(folder).glob("libggml-cpu.so*"))
    assert b"HEARTH_Q41_OFF" in library.read_bytes(), "make install applies native/patches/*.patch"


def test_every_tile_shape_gives_the_stock_kernels_logits_bit_for_bit():
    hearth = _digests()
    stock = _digests(HEARTH_Q41_OFF="1")
    assert set(hearth) == {"history", *(str(n) for n in CHUNKS)}
    assert hearth == stock
    # The digests cover distinct logits: a test whose chunks all hashed alike would prove nothing.
    assert len(set(hearth.values())) == len(CHUNKS) + 1
