"""The NanoLLM face: from_pretrained, generate's stream (.text, .eos, .kv_cache), ChatHistory with its
templates, edits and per-turn cache reuse, on the real default model through the shared engine."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from support.wait import wait_until

import llm.nano
import prompts
from llm.nano import ChatHistory, KVCache, NanoLLM, StreamingResponse
from native import model_loads

SYSTEM = "You are a helpful and friendly AI assistant."


@pytest.fixture(scope="module")
def model(engine) -> NanoLLM:
    return NanoLLM.from_pretrained("default", api="mlc", api_token="hf_abc123def", quantization="q4f16_ft")


def chat_turn(model: NanoLLM, history: ChatHistory, text: str, max_new_tokens: int = 12):
    """One turn as the seed writes it; returns (embedding, position, reply)."""
    history.append(role="user", msg=text)
    embedding, position = history.embed_chat()
    reply = model.generate(
        embedding,
        streaming=True,
        kv_cache=history.kv_cache,
        stop_tokens=history.template.stop,
        max_new_tokens=max_new_tokens,
    )
    bot = history.append(role="bot", text="")
    for token in reply:
        bot.text += token
    history.kv_cache = reply.kv_cache
    return embedding, position, reply


def wait_idle(engine) -> None:
    wait_until(lambda: engine.stats()["slots_in_use"] == 0, what="every slot free")


def test_public_names_are_pinned():
    assert sorted(llm.nano.__all__) == sorted(
        [
            "BotFunctions",
            "ChatHistory",
            "ChatMessage",
            "KVCache",
            "NanoLLM",
            "StreamingResponse",
            "bot_function",
        ]
    )


def test_from_pretrained_shares_the_engine(engine, model):
    loads = model_loads()
    assert model.engine is engine
    assert NanoLLM.from_pretrained("default").engine is engine
    assert model_loads() == loads
    assert model.config.type == engine.info.architecture and model.config.max_length == engine.n_ctx


def test_reply_streams_text_and_sets_eos_on_the_last_piece(model):
    reply = model.generate("Once upon a time", max_new_tokens=10)
    assert isinstance(reply, StreamingResponse)
    seen = [(piece, reply.eos) for piece in reply]
    assert [eos for _, eos in seen] == [False] * (len(seen) - 1) + [True]
    assert "".join(piece for piece, _ in seen) == reply.text
    assert reply.completion.finish_reason == "length" and reply.completion.usage.completion_tokens == 10


def test_greedy_by_default_and_streaming_false_returns_the_text(model):
    streamed = model.generate("The capital of France is", max_new_tokens=8)
    text = model.generate("The capital of France is", streaming=False, max_new_tokens=8)
    assert text == streamed.wait() and isinstance(text, str)


def test_stop_tokens_cut_the_reply(model):
    full = model.generate("One, two, three, four,", streaming=False, max_new_tokens=12)
    cut = model.generate("One, two, three, four,", streaming=False, max_new_tokens=12, stop_tokens=[","])
    assert "," in full and cut == full.split(",")[0]


def test_bad_arguments_are_refused_clearly(model):
    with pytest.raises(TypeError, match="min_new_tokens is not supported"):
        model.generate("Hi", min_new_tokens=5)
    with pytest.raises(TypeError, match="`max_new_token`: did you mean `max_new_tokens`"):
        model.generate("Hi", max_new_token=5)
    with pytest.raises(ValidationError, match="temperature"):
        model.generate("Hi", do_sample=True, temperature=7.0)
    with pytest.raises(TypeError, match="inputs must be text or a list of token ids"):
        model.generate(3.5)
    with pytest.raises(TypeError, match="stop token"):
        model.generate("Hi", stop_tokens=[1.5])


def test_breaking_out_of_a_reply_cancels_the_generation(engine, model, chat_prompt):
    reply = model.generate(chat_prompt, max_new_tokens=500)
    for _ in reply:
        break
    wait_idle(engine)
    assert engine.stats()["slots_in_use"] == 0
    assert reply.completion is None or reply.completion.usage.completion_tokens < 500


def test_stop_ends_the_reply_early(model, chat_prompt):
    reply = model.generate(chat_prompt, max_new_tokens=500)
    pieces = []
    for piece in reply:
        pieces.append(piece)
        if len(pieces) == 3:
            reply.stop()
    assert reply.completion.finish_reason == "cancelled"
    assert reply.completion.usage.completion_tokens < 500


def test_text_continues_a_kv_cache(model):
    first = model.generate("The capital of France is", max_new_tokens=2)  # " Paris."
    first.wait()
    cache = first.kv_cache
    assert cache.tokens[: len(model.tokenize("The capital of France is"))] == model.tokenize(
        "The capital of France is"
    )
    held = len(cache.tokens)
    assert held == len(first.prompt) + 1  # the prompt and the reply but its last token, never computed
    more = model.generate(" And the capital of Italy is", kv_cache=cache, max_new_tokens=4)
    more.wait()
    usage = more.completions[0].usage
    assert usage.cached_tokens == held
    assert usage.prompt_tokens == held + len(
        model.tokenize(" And the capital of Italy is", add_special=False)
    )
    assert more.kv_cache is cache and len(cache.tokens) > held  # the reply moved the cache on


# -- ChatHistory -------------------------------------------------------------------------------------


def test_each_turn_prefills_only_its_new_tokens(model):
    history = ChatHistory(model, system_prompt=SYSTEM)
    embedding, position, reply = chat_turn(model, history, "Hi, who are you?")
    assert position == 0 and reply.completions[0].usage.prompt_tokens == len(embedding)
    for question in ("What is 2+2?", "Thanks!", "Bye."):
        embedding, position, reply = chat_turn(model, history, question)
        usage = reply.completions[0].usage
        assert position > 0
        assert usage.cached_tokens == position  # what the history expected the cache to hold
        assert usage.prompt_tokens - usage.cached_tokens == len(embedding)  # only the new tokens
        assert len(embedding) < 40  # the question and its markup, not the whole chat
    assert [m.role for m in history] == ["system"] + ["user", "bot"] * 4


def test_the_prompt_is_the_template_rendering_of_the_chat(model):
    history = ChatHistory(model, chat_template="chat-ml", system_prompt="Be brief.")
    history.append("user", "Hello!")
    history.append("bot", "Hi.")
    history.append("user", "Bye.")
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi.<|im_end|>\n<|im_start|>user\nBye.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert history.prompt.text == expected
    embedding, position = history.embed_chat()
    assert (embedding, position) == (model.tokenize(expected), 0)


def test_editing_a_message_recomputes_from_the_edit(model):
    history = ChatHistory(model, chat_template="chat-ml", system_prompt=SYSTEM)
    chat_turn(model, history, "Tell me about cats.")
    chat_turn(model, history, "And dogs?")
    system_only = prompts.render(history.to_list()[:1], history.template, add_generation_prompt=False)
    before_edit = len(model.tokenize(system_only.text))
    history[1].text = "Describe horses."
    history.append("user", "And birds?")
    embedding, position = history.embed_chat()
    # The cache still holds the system prompt, and "<|im_start|>user\n" of the edited message.
    assert before_edit <= position <= before_edit + 3
    reply = model.generate(embedding, kv_cache=history.kv_cache, max_new_tokens=4)
    reply.wait()
    assert reply.completions[0].usage.cached_tokens == position


def test_removing_messages(model):
    history = ChatHistory(model, system_prompt=SYSTEM)
    for text in ("one", "two", "three", "four"):
        history.append("user", text)
    history.remove(-2, 0)  # NanoLLM's "the last two"
    assert [m.text for m in history] == [SYSTEM, "one", "two"]
    history.remove(1)
    del history[-1]
    assert [m.text for m in history] == [SYSTEM]
    history.append("user", "again")
    history.pop(1)
    assert len(history) == 1
    with pytest.raises(IndexError, match="has 1"):
        history.pop(2)
    with pytest.raises(IndexError):
        history.remove(3)


def test_reset_keeps_only_the_system_prompt(model):
    history = ChatHistory(model, system_prompt=SYSTEM)
    chat_turn(model, history, "Hello!")
    assert history.kv_cache is not None
    history.reset()
    assert [(m.role, m.text) for m in history] == [("system", SYSTEM)] and history.kv_cache is None
    assert history.embed_chat()[1] == 0
    history.system_prompt = "Be terse."
    assert history[0].text == "Be terse." and len(history) == 1


def test_appending_a_reply_takes_its_kv_cache(model):
    history = ChatHistory(model)
    history.append("user", "Hello!")
    embedding, _ = history.embed_chat()
    reply = model.generate(embedding, max_new_tokens=4)
    reply.wait()
    message = history.append("bot", reply)
    assert message.text == reply.text and history.kv_cache is reply.kv_cache
    assert isinstance(history.kv_cache, KVCache) and history.kv_cache.num_tokens > len(embedding)


def test_templates_by_name_file_or_model_metadata(model, tmp_path):
    assert ChatHistory(model).template.name == "gguf"  # SmolLM2's own, embedded in the GGUF file
    history = ChatHistory(model, chat_template="llama-2", system_prompt="Be brief.")
    history.append("user", "Hi")
    assert history.prompt.text == "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"
    assert history.template.stop == ("</s>",)
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"template": "{{ messages[-1]['content'] }} =>", "stop": ["\n"]}))
    history = ChatHistory(model, chat_template=str(path))
    history.append("user", "2+2")
    assert history.prompt.text == "2+2 =>" and history.template.stop == ("\n",)


def test_bad_templates_are_refused_clearly(model, tmp_path):
    with pytest.raises(prompts.UnknownTemplate, match="vicuna-v1"):
        ChatHistory(model, chat_template="vicuna-v9")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(prompts.TemplateError, match="not valid JSON"):
        ChatHistory(model, chat_template=str(broken))
    with pytest.raises(TypeError, match="chat_template"):
        ChatHistory(model, chat_template={"template": "x"})


def test_a_server_url_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match=r"ChatHearth\(model=URL\)"):
        NanoLLM.from_pretrained("https://example.invalid/v1")
