"""Incremental detokenization: whole characters only, stop strings never shown, even in part."""

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
