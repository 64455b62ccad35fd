"""Keywords mean what they say: HearthLLM, ChatHearth, ChatModule and NanoLLM refuse an unknown one,
naming the field meant, where they used to drop it and run with the default."""

from __future__ import annotations

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import BaseCallbackHandler
from pydantic import ValidationError

from llm import ChatHearth, HearthLLM
from llm.keywords import UnknownKeyword
from llm.mlc import ChatConfig, ChatModule, GenerationConfig
from llm.nano import NanoLLM


class TokenRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)


@pytest.mark.parametrize("cls", [HearthLLM, ChatHearth])
def test_the_langchain_classes_refuse_a_misspelt_setting_naming_the_field(cls):
    # The example: this used to generate at temperature 0.5 for 128 tokens, without a word.
    with pytest.raises(UnknownKeyword) as refused:
        cls(model="default", temprature=0.1, max_new_token=5)
    message = str(refused.value)
    assert "`temprature`: did you mean `temperature`?" in message
    assert "`max_new_token`: did you mean `max_new_tokens`?" in message
    assert isinstance(refused.value, TypeError)  # what Python raises for an unexpected keyword


def test_a_keyword_close_to_nothing_is_refused_too():
    with pytest.raises(UnknownKeyword, match="`zzz` is not one of its keywords"):
        HearthLLM(model="default", zzz=1)


def test_langchains_own_keywords_and_aliases_keep_working(engine):
    recorder = TokenRecorder()
    llm = HearthLLM(
        model="default",
        temperature=0.0,
        max_tokens=6,  # the alias OpenAI-style code passes
        callbacks=[recorder],
        tags=["t"],
        metadata={"k": "v"},
        verbose=False,
        cache=InMemoryCache(),
        name="mine",
    )
    assert llm.max_new_tokens == 6 and llm.tags == ["t"] and llm.metadata["k"] == "v"
    text = llm.invoke("The capital of France is")
    assert text and "".join(recorder.tokens) == text


def test_per_call_settings_are_honoured_and_unknown_ones_refused(engine):
    llm = HearthLLM(model="default", temperature=0.0, max_new_tokens=20)
    short = llm.invoke("Once upon a time", max_tokens=3)
    assert llm.generate(["Once upon a time"], max_new_tokens=3).generations[0][0].text == short
    assert len(engine.tokenize(short, add_special=False)) <= 4  # 3 tokens, retokenized
    with pytest.raises(UnknownKeyword, match="did you mean `temperature`"):
        llm.invoke("Once upon a time", temprature=0.2)
    chat = ChatHearth(model="default", temperature=0.0, max_new_tokens=4)
    with pytest.raises(UnknownKeyword, match="did you mean `top_k`"):
        chat.invoke("Hello", topk=3)


def test_chat_module_refuses_unknown_keywords_with_a_suggestion():
    with pytest.raises(UnknownKeyword, match="`chat_confg`: did you mean `chat_config`"):
        ChatModule("default", chat_confg=ChatConfig(temperature=0.0))
    with pytest.raises(ValidationError, match="`temprature`: did you mean `temperature`"):
        ChatConfig(temprature=0.5)
    with pytest.raises(ValidationError, match="`max_gen_length`: did you mean `max_gen_len`"):
        GenerationConfig(max_gen_length=5)
    cm = ChatModule("default", chat_config=ChatConfig(temperature=0.0, max_gen_len=4))
    with pytest.raises(UnknownKeyword, match="`generation_confg`: did you mean `generation_config`"):
        cm.generate("Hello", generation_confg=GenerationConfig(max_gen_len=2))


def test_nano_llm_refuses_unknown_keywords_with_a_suggestion():
    with pytest.raises(UnknownKeyword, match="`max_context_length`: did you mean `max_context_len`"):
        NanoLLM.from_pretrained("default", max_context_length=512)
    model = NanoLLM.from_pretrained("default")
    with pytest.raises(UnknownKeyword, match="`max_new_token`: did you mean `max_new_tokens`"):
        model.generate("Once upon a time", max_new_token=4)
    reply = model.generate("Once upon a time", max_new_tokens=3, top_k=1, streaming=False)
    assert isinstance(reply, str)  # GenerationSettings' fields (top_k) still pass as keywords
