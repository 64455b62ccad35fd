"""Hearth's flash-attention kernel (native/patches): a token's logits do not depend on how it was batched.

Bit for bit, on the default model: a token computed in a chunk of 20, alone after the other 19, at the
end of a 120-token chunk, or beside another sequence's decode step. The history is 600 tokens, so the
kernel's 256-cell segments are cut and folded on every path.
"""

from __future__ import annotations

import pytest

from native.hardware import build_features
from native.llama import Batch, Context, Model
from native.resolve import resolve_model

pytestmark = pytest.mark.skipif(
    not ("avx512" in build_features() or {"avx2", "fma", "f16c"} <= build_features()),
    reason="the kernel is built into x86 builds with AVX-512, or AVX2 with FMA and F16C; other builds run "
    "llama.cpp's own",
)

HISTORY = 600


@pytest.fixture(scope="module")
def model():
    m = Model(resolve_model("default"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def ctx(model):
    c = Context(model, n_ctx=4096, n_batch=512, n_seq_max=2, n_threads=2)
    yield c
    c.close()


@pytest.fixture(scope="module")
def tokens(model):
    text = "The quick brown fox jumps over the lazy dog. A long tale of a river and its town. " * 40
    toks = model.tokenize(text, add_special=False)
    assert len(toks) > HISTORY + 20
    return toks


def _decode(ctx: Context, tokens: list[int], seq: int, start: int, end: int, want_last: bool = False) -> None:
    batch = Batch(512)
    try:
        for s0 in range(start, end, 512):
            batch.clear()
            for i in range(s0, min(end, s0 + 512)):
                batch.add(tokens[i], i, seq, want_last and i == end - 1)
            ctx.decode(batch)
    finally:
        batch.close()


def _history(ctx: Context, tokens: list[int], seq: int, upto: int) -> None:
    ctx.forget(seq)
    _decode(ctx, tokens, seq, 0, upto)


def test_a_token_gets_the_same_logits_however_its_prompt_was_chunked(ctx, tokens):
    last = HISTORY + 19

    _history(ctx, tokens, 0, HISTORY)
    _decode(ctx, tokens, 0, HISTORY, last + 1, want_last=True)  # a 20-token chunk (a chat turn)
    in_a_chunk = ctx.logits(19)

    _history(ctx, tokens, 0, HISTORY)
    _decode(ctx, tokens, 0, HISTORY, last)
    _decode(ctx, tokens, 0, last, last + 1, want_last=True)  # the last token alone (a decode step)
    alone = ctx.logits(0)

    _history(ctx, tokens, 0, 500)
    _decode(ctx, tokens, 0, 500, last + 1, want_last=True)  # the end of a 120-token chunk
    in_a_long_chunk = ctx.logits(last - 500)

    assert len(in_a_chunk) == 4 * 49152  # SmolLM2's vocabulary, F32
    assert alone == in_a_chunk
    assert in_a_long_chunk == in_a_chunk


def test_a_decode_step_gets_the_same_logits_beside_another_sequence(ctx, tokens):
    last = HISTORY + 19
    _history(ctx, tokens, 0, last)
    _decode(ctx, tokens, 0, last, last + 1, want_last=True)
    alone = ctx.logits(0)

    _history(ctx, tokens, 0, last)
    _history(ctx, tokens, 1, 300)
    batch = Batch(4)
    try:
        mine = batch.add(tokens[last], last, 0, True)
        batch.add(tokens[300], 300, 1, True)
        ctx.decode(batch)
    finally:
        batch.close()
    assert ctx.logits(mine) == alone
