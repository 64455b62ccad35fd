"""Incremental detokenization: whole characters only, stop strings never shown, even in part."""

from hypothesis import given
from hypothesis import strategies as st

from native.detok import TextAssembler


def feed_all(assembler: TextAssembler, pieces: list[bytes]) -> list[str]:
    out = [assembler.feed(p) for p in pieces]
    out.append(assembler.flush())
    return out


def test_multibyte_character_split_across_tokens_comes_out_whole():
    fire = "🔥".encode()
    out = feed_all(TextAssembler(), [b"a", fire[:1], fire[1:3], fire[3:], b"b"])
    assert out == ["a", "", "", "🔥", "b", ""]


def test_stop_string_across_tokens_is_cut_and_never_emitted():
    assembler = TextAssembler(stop=("<|im_end|>",))
    out = feed_all(assembler, [b"Hello", b" world", b"<|im", b"_end", b"|>", b"more"])
    assert "".join(out) == "Hello world"
    assert assembler.stopped
    assert assembler.text == "Hello world"


def test_partial_stop_string_is_held_back_then_released_when_it_diverges():
    assembler = TextAssembler(stop=("STOP",))
    assert assembler.feed(b"go ST") == "go "
    assert assembler.feed(b"O") == ""
    assert assembler.feed(b"x") == "STOx"
    assert assembler.flush() == ""


def test_held_back_text_is_released_at_the_end():
    assembler = TextAssembler(stop=("STOP",))
    assert assembler.feed(b"ends with ST") == "ends with "
    assert assembler.flush() == "ST"
    assert assembler.text == "ends with ST"


def test_earliest_of_several_stop_strings_wins():
    assembler = TextAssembler(stop=("bb", "a"))
    assert "".join(feed_all(assembler, [b"xxbbya"])) == "xx"


@given(
    text=st.text(alphabet=st.sampled_from(list("ab <|>é日🔥\n")), max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    stop=st.sampled_from(["", "<|", "🔥", "b b", "é日"]),
)
def test_any_split_of_the_bytes_yields_exactly_the_text_before_the_first_stop(text, cuts, stop):
    data = text.encode()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assembler = TextAssembler(stop=(stop,) if stop else ())
    out = feed_all(assembler, pieces)
    expected = text[: text.index(stop)] if stop and stop in text else text
    assert "".join(out) == expected
    assert all("\ufffd" not in piece for piece in out)
