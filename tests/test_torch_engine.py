"""The torch engine (native/torch_engine.py): the engine protocol on PyTorch and transformers, tested on
the default model's GGUF file dequantized by transformers, against the llama.cpp engine on the same file.

Skipped where torch is not installed (`make install TORCH=1`), except the test of the error that says so.
Nothing here downloads: models load with `local_files_only`, and HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.streams import assert_streams_run_side_by_side

from native import EngineProtocol, SamplingParams, load_engine, with_backend
from native.engine import split_backend
from native.errors import BackendUnavailable, ContextOverflow, ModelNotFound, UnsupportedSampling
from native.torch_load import TORCH_INSTALL, torch_missing

needs_torch = pytest.mark.skipif(
    bool(torch_missing()), reason=f"the torch backend is not installed ({TORCH_INSTALL})"
)
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=64, repetition_penalty=1.0, min_p=0.0)
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
QUESTIONS = [
    "What is the capital of France?",
    "Write a long story about a dragon.",
    "List three colours.",
    "How do plants make food?",
]


@pytest.fixture(scope="module")
def torch_engine():
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: loading passes local_files_only too
    engine = load_engine("default", backend="torch", n_threads=2, parallel=4, n_ctx=1024)
    yield engine
    engine.close()
    patch.undo()


def test_without_torch_the_error_names_the_install_command(monkeypatch):
    import native.torch_load

    real = native.torch_load.importlib.util.find_spec
    monkeypatch.setattr(
        native.torch_load.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name)
    )
    with pytest.raises(BackendUnavailable, match="make install TORCH=1"):
        load_engine("default", backend="torch")


def test_a_backend_is_named_by_argument_prefix_or_environment(monkeypatch):
    assert split_backend("default", "torch") == ("torch", "default")
    assert split_backend("torch:default") == ("torch", "default")
    assert split_backend("torch:") == ("torch", None)
    assert with_backend("default", "torch") == "torch:default"
    assert split_backend(with_backend(None, "llama.cpp")) == ("llama.cpp", None)
    monkeypatch.setenv("HEARTH_BACKEND", "torch")
    assert split_backend("default") == ("torch", "default")
    assert split_backend("llama.cpp:default") == ("llama.cpp", "default")  # the spec's own word wins
    with pytest.raises(BackendUnavailable, match="llama.cpp, torch"):
        split_backend("default", "onnx")


@needs_torch
def test_the_torch_engine_is_an_engine_protocol(torch_engine, engine):
    assert isinstance(torch_engine, EngineProtocol)
    assert torch_engine.renders_chat is False
    assert torch_engine.info.path == engine.info.path  # the same GGUF file, validated by inspect_gguf
    assert load_engine("torch:default") is torch_engine  # shared, as load_engine shares every engine


@needs_torch
def test_it_tokenizes_as_llama_cpp_does(torch_engine, engine):
    for question in QUESTIONS:
        prompt = CHAT.format(question)
        assert torch_engine.tokenize(prompt) == engine.tokenize(prompt)
    assert torch_engine.tokenize("<|im_end|>", parse_special=False) == engine.tokenize(
        "<|im_end|>", parse_special=False
    )


@needs_torch
def test_greedy_replies_equal_llama_cpps(torch_engine, engine):
    """Both engines run the same GGUF file, not the same arithmetic: transformers dequantizes the Q4_1
    weights to f32 and multiplies in f32 (f32 KV cache), while llama.cpp quantizes each activation row
    to 8 bits (Q8_1), takes integer dot products with the 4-bit blocks and keeps an f16 KV cache. The
    logits differ in their last digits, so greedy decoding follows the same tokens until two candidates
    are nearly tied, and then the replies part for good.

    Measured here (2 threads each, 128 greedy tokens, same token ids in): the replies to the four
    questions of QUESTIONS are equal for their first 7 (the whole reply), 68, 11 (the whole reply) and
    73 tokens; "Write a poem about the sea." parts after 58 tokens, and "Explain gravity to a child."
    after 5 ("a big, heavy box" against "a big ball of chocolate"). So N is a property of the prompt:
    from a handful of tokens to whole replies. This test holds the four to their whole 64-token replies."""
    for question in QUESTIONS:
        tokens = engine.tokenize(CHAT.format(question))
        ours = torch_engine.submit(tokens, GREEDY).result(timeout=300)
        theirs = engine.submit(tokens, GREEDY).result(timeout=300)
        assert ours.text == theirs.text, question
        assert ours.finish_reason == theirs.finish_reason
        assert ours.usage.completion_tokens == theirs.usage.completion_tokens > 0


@needs_torch
def test_a_second_turn_reuses_the_first_turns_cache(torch_engine):
    first = CHAT.format("Name a large animal.")
    reply = torch_engine.submit(first, GREEDY, session="zoo").result(timeout=300)
    second = first + reply.text + "<|im_end|>\n" + CHAT.format("And a small one?")
    done = torch_engine.submit(second, GREEDY, session="zoo").result(timeout=300)
    n_first = len(torch_engine.tokenize(first))
    assert done.usage.prompt_tokens == len(torch_engine.tokenize(second))
    # The cache is found again in whole pages (16 tokens): it covers the first prompt and most of its reply.
    assert n_first <= done.usage.cached_tokens < done.usage.prompt_tokens
    assert done.usage.cached_from == "slot"
    assert done.text


@needs_torch
def test_cached_pages_serve_only_their_own_user(torch_engine):
    """Hearth's rule for every cache: shared within a user, never between users (native/torch_owners.py).
    transformers alone shares any two requests' pages that start alike."""
    prompt = CHAT.format("Describe the lighthouse keeper's morning, step by step, in plain words.")
    n_pages = len(torch_engine.tokenize(prompt)) // 16
    short = SamplingParams(temperature=0.0, max_new_tokens=4)

    def cached(**who) -> int:
        return torch_engine.submit(prompt, short, **who).result(timeout=300).usage.cached_tokens

    assert cached(user="ann") == 0  # her first
    assert cached(user="ann", session="another") >= 16 * (n_pages - 1)  # hers again, any session
    assert cached(user="bob") == 0  # the same words, another user
    assert cached() == 0  # nor a request of no user
    assert cached() >= 16 * (n_pages - 1)  # those share among themselves, as in the llama.cpp engine
    assert cached(user="bob") >= 16 * (n_pages - 1)


@needs_torch
def test_four_concurrent_streams_complete(torch_engine):
    assert_streams_run_side_by_side(torch_engine, [CHAT.format(q) for q in QUESTIONS], GREEDY, timeout=300)


@needs_torch
def test_cancelling_stops_a_stream(torch_engine):
    long = SamplingParams(temperature=0.0, max_new_tokens=900, repetition_penalty=1.0)
    stream = torch_engine.submit(CHAT.format("Write a long story about a dragon."), long)
    for _ in zip(range(3), stream, strict=False):
        pass
    stream.cancel()
    done = stream.result(timeout=30)
    assert done.finish_reason == "cancelled"
    assert done.usage.completion_tokens < 100
    assert torch_engine.submit("Hello", GREEDY).result(timeout=300).finish_reason in ("stop", "length")


@needs_torch
def test_stop_strings_end_the_reply_and_are_not_shown(torch_engine):
    done = torch_engine.submit(
        CHAT.format("Count from one to ten in words."), SamplingParams(temperature=0.0, stop=("three",))
    ).result(timeout=300)
    assert done.finish_reason == "stop" and "three" not in done.text


@needs_torch
def test_sampling_follows_each_requests_settings(torch_engine):
    sampled = SamplingParams(
        temperature=1.2, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.3, max_new_tokens=24
    )
    done = torch_engine.submit(CHAT.format("Tell me a joke."), sampled).result(timeout=300)
    assert done.finish_reason in ("stop", "length") and done.usage.completion_tokens > 0


@needs_torch
def test_bad_input_gets_clear_errors(torch_engine, tmp_path):
    with pytest.raises(ModelNotFound):
        load_engine(tmp_path / "no-such-model", backend="torch")
    with pytest.raises(ContextOverflow, match="does not fit the context of 1024 tokens"):
        torch_engine.submit("word " * 2000)
    with pytest.raises(UnsupportedSampling, match="llama.cpp backend"):
        torch_engine.submit("Hello", SamplingParams(grammar='root ::= "yes"'))
    with pytest.raises(UnsupportedSampling, match="seed"):
        torch_engine.submit("Hello", SamplingParams(temperature=0.7, seed=1))
    with pytest.raises(ValueError, match="empty"):
        torch_engine.submit([])


@needs_torch
def test_a_hugging_face_folder_loads_and_answers_alike(torch_engine, tmp_path):
    """A safetensors folder (here: the dequantized default model saved as one) answers as the GGUF file it
    was made from."""
    from safetensors.torch import save_model

    # save_pretrained refuses a model loaded from GGUF ("not serializable"): write the folder's files
    # as it would, without the GGUF origin in the config.
    folder = tmp_path / "smollm2"
    folder.mkdir()
    config = torch_engine.model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config))
    save_model(torch_engine.model, str(folder / "model.safetensors"))
    torch_engine.tokenizer.save_pretrained(folder)
    prompt = CHAT.format("What is the capital of France?")
    expected = torch_engine.submit(prompt, GREEDY).result(timeout=300).text
    engine = load_engine(str(folder), backend="torch", n_threads=2, parallel=1, n_ctx=256)
    try:
        assert engine.info.architecture == "llama" and engine.info.chat_template
        assert engine.submit(prompt, GREEDY).result(timeout=300).text == expected
    finally:
        engine.close()


@needs_torch
def test_the_langchain_faces_run_on_it(torch_engine):
    from llm import ChatHearth, HearthLLM

    llm = HearthLLM(engine=torch_engine, temperature=0.0, max_new_tokens=8)
    assert isinstance(llm.invoke("The capital of France is"), str)
    chat = ChatHearth(engine=torch_engine, temperature=0.0, max_new_tokens=16)
    assert chat.invoke([("human", "Say hello.")]).content


@needs_torch
def test_a_program_that_never_closes_the_engine_still_exits():
    """transformers' generation loop is a non-daemon thread, which Python waits for before exit handlers
    run: the engine stops it when the main thread ends."""
    program = (
        "from native import SamplingParams, load_engine\n"
        "engine = load_engine('default', backend='torch', n_threads=2, parallel=1, n_ctx=256)\n"
        "stream = engine.submit('Hello', SamplingParams(temperature=0.0, max_new_tokens=4))\n"
        "print(stream.result().finish_reason)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] in ("stop", "length")
