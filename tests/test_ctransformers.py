"""`llm.ctransformers`: ctransformers' API and its LangChain class on the real default model, every
argument with its ctransformers meaning."""

from __future__ import annotations

import itertools
import shutil

import pytest
from langchain_classic.chains import LLMChain
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.prompts import PromptTemplate
from pydantic import ValidationError

import llm.ctransformers
from llm.ctransformers import (
    AutoModelForCausalLM,
    CTransformers,
    LibraryUnavailable,
    ModelTypeMismatch,
)
from llm.ctransformers.model_types import check_model_type
from llm.keywords import UnknownKeyword
from native.builds import loaded_build
from native.errors import DeviceUnavailable
from native.hardware import available_devices
from native.resolve import resolve_model

PROMPT = "The capital of France is"
GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A copy of the default model: a file of its own gets an engine of its own, so the context and
    threads asked for here are the engine's whatever other tests loaded before."""
    folder = tmp_path_factory.mktemp("ct-model")
    shutil.copy(resolve_model("default"), folder / "smollm2.gguf")
    return folder


@pytest.fixture(scope="module")
def ct(model_dir):
    return AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        model_file="smollm2.gguf",
        model_type="llama",
        context_length=512,
        threads=1,
        gpu_layers=0,
    )


def test_public_names_are_pinned():
    assert sorted(llm.ctransformers.__all__) == sorted(
        ["AutoConfig", "AutoModelForCausalLM", "CTransformers", "Config", "LLM", "LibraryUnavailable"]
        + ["ModelTypeMismatch"]
    )


def test_context_length_threads_and_gpu_layers_reach_the_engine(ct):
    assert ct.context_length == 512 and ct.engine.n_ctx == 512
    assert ct.engine.n_threads == 1 and ct.engine.stats()["context_size"] == 512
    assert str(ct.engine.device) == "cpu"  # gpu_layers=0: the CPU, as in ctransformers
    assert ct.model_type == "llama" and ct.config.context_length == 512
    assert ct.is_eos_token(ct.eos_token_id) and ct.vocab_size > 1000


def test_a_model_already_loaded_with_another_shape_is_refused_with_its_values(model_dir, ct):
    with pytest.raises(ValueError, match="already loaded with 512-token contexts and 1 threads"):
        AutoModelForCausalLM.from_pretrained(str(model_dir / "smollm2.gguf"), threads=2)
    with pytest.raises(ValueError, match="threads=2: this model runs with 1 threads"):
        ct(PROMPT, threads=2)


def test_text_stream_generate_and_tokens_agree(ct):
    text = ct(PROMPT, max_new_tokens=8, **GREEDY)
    assert text and isinstance(text, str)
    assert "".join(ct(PROMPT, max_new_tokens=8, stream=True, **GREEDY)) == text
    ids = list(itertools.islice(ct.generate(ct.tokenize(PROMPT), **GREEDY), 8))
    assert len(ids) == 8 and all(isinstance(i, int) for i in ids)
    assert ct.detokenize(ids) == text
    assert ct.detokenize(ids, decode=False).decode() == text
    assert ct(PROMPT, max_new_tokens=0, **GREEDY) == ct.detokenize(ids[:1])  # ctransformers gives one


def test_stop_strings_and_reset_false_continue_as_in_ctransformers(ct):
    text = ct(PROMPT, max_new_tokens=8, **GREEDY)
    first_word = text.split()[0]
    assert ct(PROMPT, max_new_tokens=8, stop=[first_word], **GREEDY) == text[: text.index(first_word)]
    # reset=False: the next prompt continues after everything evaluated so far.
    opening = ct("Once upon a time", max_new_tokens=4, **GREEDY)
    so_far = ct._context
    follow = ct(" Then", max_new_tokens=4, reset=False, **GREEDY)
    expected = ct.generate([*so_far, *ct.engine.tokenize(" Then", add_special=False)], **GREEDY)
    assert follow == ct.detokenize(list(itertools.islice(expected, 4))) and opening


def test_config_keywords_keep_ctransformers_defaults_and_refuse_typos(model_dir, ct):
    assert (ct.config.top_k, ct.config.top_p, ct.config.temperature) == (40, 0.95, 0.8)
    assert (ct.config.repetition_penalty, ct.config.last_n_tokens, ct.config.max_new_tokens) == (1.1, 64, 256)
    with pytest.raises(UnknownKeyword, match="`temprature`: did you mean `temperature`"):
        AutoModelForCausalLM.from_pretrained(str(model_dir / "smollm2.gguf"), temprature=0.1)
    with pytest.raises(TypeError):
        ct(PROMPT, temprature=0.1)  # __call__'s own signature, as ctransformers'
    # Chainlit's sliders send whole numbers as floats (top_k=50.0): they mean the number; 2.5 does not.
    assert ct(PROMPT, max_new_tokens=4.0, top_k=1.0) == ct(PROMPT, max_new_tokens=4, top_k=1)
    with pytest.raises(TypeError, match="top_k must be a whole number, got 2.5"):
        ct(PROMPT, top_k=2.5)
    with pytest.raises(NotImplementedError, match="hf=True"):
        AutoModelForCausalLM.from_pretrained(str(model_dir / "smollm2.gguf"), hf=True)


def test_model_type_is_checked_against_the_files_architecture(model_dir):
    with pytest.raises(ModelTypeMismatch, match="holds a llama model: pass model_type='llama'"):
        AutoModelForCausalLM.from_pretrained(str(model_dir / "smollm2.gguf"), model_type="gpt2")
    for name in ("llama", "mistral", "LLaMA"):
        check_model_type(name, "llama", "smollm2.gguf")
    check_model_type("gemma3", "gemma3", "gemma-3-270m.gguf")  # a GGUF architecture name itself
    for name, arch in [("falcon", "falcon"), ("gpt_neox", "gptneox"), ("dolly-v2", "gptneox")]:
        check_model_type(name, arch, "x.gguf")
    with pytest.raises(ModelTypeMismatch, match="gemma3 model"):
        check_model_type("llama", "gemma3", "gemma-3-270m.gguf")


def test_lib_names_the_build_that_runs_the_model(model_dir):
    path = str(model_dir / "smollm2.gguf")
    current = loaded_build()
    assert AutoModelForCausalLM.from_pretrained(path, lib=current.kind).engine.n_ctx == 512
    assert AutoModelForCausalLM.from_pretrained(path, lib=str(current.folder)).engine.n_ctx == 512
    other = "basic" if current.kind != "basic" else "avx2"
    with pytest.raises(LibraryUnavailable) as refused:
        AutoModelForCausalLM.from_pretrained(path, lib=other)
    assert f"{current.kind} at {current.folder} (in use)" in str(refused.value)
    with pytest.raises(ValueError, match="did you mean 'avx2'"):
        AutoModelForCausalLM.from_pretrained(path, lib="avx22")


@pytest.mark.skipif(any(d.is_gpu for d in available_devices()), reason="a GPU is present: layers load there")
def test_gpu_layers_on_a_cpu_only_build_is_a_clear_error(model_dir):
    with pytest.raises(DeviceUnavailable, match="gpu_layers=10: this llama.cpp build runs on the CPU only"):
        AutoModelForCausalLM.from_pretrained(str(model_dir / "smollm2.gguf"), gpu_layers=10)


# -- the LangChain class ------------------------------------------------------------------------------


class TokenRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)


def test_langchain_class_takes_config_nested_or_flat(model_dir, ct):
    path = str(model_dir / "smollm2.gguf")
    nested = CTransformers(model=path, model_type="llama", config={"max_new_tokens": 6, **GREEDY})
    flat = CTransformers(model=path, model_type="llama", max_new_tokens=6, stream=True, threads=1, **GREEDY)
    assert flat.client.config.max_new_tokens == 6 and flat.client.config.threads == 1
    expected = ct(PROMPT, max_new_tokens=6, **GREEDY)
    assert nested.client.engine is flat.client.engine is ct.engine  # one copy of the weights
    assert nested.invoke(PROMPT) == flat.invoke(PROMPT) == expected
    assert "".join(flat.stream(PROMPT)) == expected
    assert flat.invoke(PROMPT, max_new_tokens=2) == ct(PROMPT, max_new_tokens=2, **GREEDY)
    with pytest.raises(ValidationError, match="given twice"):
        CTransformers(model=path, config={"max_new_tokens": 6}, max_new_tokens=7)
    with pytest.raises(UnknownKeyword, match="`max_new_token`: did you mean `max_new_tokens`"):
        CTransformers(model=path, max_new_token=6)
    with pytest.raises(ModelTypeMismatch):
        CTransformers(model=path, model_type="mpt")


async def test_the_seeds_llm_chain_runs_with_callbacks(model_dir, ct):
    llm_init = CTransformers(
        model=str(model_dir), model_file="smollm2.gguf", model_type="mistral", max_new_tokens=24, **GREEDY
    )
    template = """
    Question: {question}
    Answer:
    """  # the seed's, as written (without its indentation this small model ends at once)
    prompt = PromptTemplate(template=template, input_variables=["question"])
    chain = LLMChain(prompt=prompt, llm=llm_init, verbose=False)
    recorder = TokenRecorder()
    result = await chain.acall("What is the capital of France?", callbacks=[recorder])
    assert result["text"] and "".join(recorder.tokens) == result["text"]
