"""The MLC-Chat face: ChatModule, its layered configuration, callbacks, stats and the raw-text LM mode,
on the real default model (SmolLM2-135M-Instruct) through the shared engine."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
from pydantic import ValidationError
from support.wait import wait_until

import llm.mlc
import prompts
from llm import ChatHearth, HearthLLM
from llm.mlc import ChatConfig, ChatModule, ConvConfig, GenerationConfig
from llm.mlc.callback import DeltaCallback, StreamIterator, StreamToStdout
from llm.mlc.conversation import separator_template
from native import model_loads
from native.resolve import resolve_model

GREEDY = ChatConfig(temperature=0.0, max_gen_len=12)


class Recorder(DeltaCallback):
    def __init__(self, callback_interval: int = 1) -> None:
        super().__init__()
        self.callback_interval = callback_interval
        self.deltas: list[str] = []
        self.stops = 0

    def delta_callback(self, delta_message: str) -> None:
        self.deltas.append(delta_message)

    def stopped_callback(self) -> None:
        self.stops += 1


@pytest.fixture(scope="module")
def cm(engine) -> ChatModule:
    return ChatModule("default", chat_config=GREEDY)


@pytest.fixture(autouse=True)
def fresh_chat(request):
    if "cm" in request.fixturenames:
        request.getfixturevalue("cm").reset_chat()


def test_public_names_are_pinned():
    assert sorted(llm.mlc.__all__) == sorted(
        ["LM", "ChatConfig", "ChatModule", "ConvConfig", "GenerationConfig", "callback"]
    )


def test_chat_module_shares_the_engine_with_langchain(engine, cm):
    loads = model_loads()
    other = ChatModule("default")
    assert cm.engine is engine and other.engine is engine
    assert ChatHearth(model="default").get_engine() is engine
    assert model_loads() == loads


def test_generate_streams_to_the_callback_and_returns_the_reply(cm):
    recorder = Recorder(callback_interval=2)
    reply = cm.generate("What is the meaning of life?", progress_callback=recorder)
    assert isinstance(reply, str) and reply
    assert "".join(recorder.deltas) == reply
    assert recorder.stops == 1
    # Every second token, plus the end: never one call per token.
    tokens = cm.stats(verbose=True)["completion_tokens"]
    assert 1 <= len(recorder.deltas) <= tokens // 2 + 2


def test_stream_to_stdout_prints_the_reply_then_a_newline(cm, capsys):
    reply = cm.generate("Say hello.", progress_callback=StreamToStdout(callback_interval=2))
    assert capsys.readouterr().out == reply + "\n"


def test_stream_iterator_hands_deltas_to_another_thread(cm):
    iterator = StreamIterator(callback_interval=1, timeout=120)
    result: dict[str, str] = {}
    worker = threading.Thread(
        target=lambda: result.update(reply=cm.generate("Hi!", progress_callback=iterator))
    )
    worker.start()
    streamed = "".join(iterator)
    worker.join(120)
    assert streamed == result["reply"]


def test_greedy_replies_are_deterministic(cm):
    first = cm.generate("Name a colour.")
    cm.reset_chat()
    assert cm.generate("Name a colour.") == first


def test_second_turn_keeps_the_history_and_prefills_only_new_tokens(cm):
    first = cm.generate("What is the meaning of life?")
    turn_one = cm.stats(verbose=True)
    cm.generate("How many points did you list out?")
    turn_two = cm.stats(verbose=True)
    assert [m["role"] for m in cm.history] == ["user", "assistant", "user", "assistant"]
    assert cm.history[1]["content"] == first
    # Turn two reuses turn one's prompt and reply from the KV cache (all but the reply's last token,
    # which the engine samples but never computes when the reply is cut at max_gen_len) and computes
    # only the tokens after them: the end of the reply's turn and the new question.
    prompt_one = turn_one["prefill"]["total_tokens"] + turn_one["prefill"]["cached_tokens"]
    reused = prompt_one + turn_one["completion_tokens"] - 1
    cached_two = turn_two["prefill"]["cached_tokens"] - turn_one["prefill"]["cached_tokens"]
    computed_two = turn_two["prefill"]["total_tokens"] - turn_one["prefill"]["total_tokens"]
    assert turn_one["completion_tokens"] == GREEDY.max_gen_len  # cut at max_gen_len, as said above
    prompt_two = cm.engine.tokenize(cm.conversation.render(cm.history[:3]))
    assert cached_two == reused
    assert computed_two == len(prompt_two) - reused


def test_prompt_reaching_the_engine_is_the_rendered_conversation(cm):
    tokens, messages = cm.conversation.tokens("Hello!")
    expected = prompts.render(messages, cm.conversation.template).text
    assert tokens == cm.engine.tokenize(expected)
    assert messages == [{"role": "user", "content": "Hello!"}]


def test_generation_config_applies_to_one_call_only(cm):
    cm.generate("Tell me a story.", GenerationConfig(max_gen_len=3))
    assert cm.stats(verbose=True)["completion_tokens"] == 3
    cm.reset_chat()
    cm.generate("Tell me a long story about a dragon.")
    assert cm.stats(verbose=True)["completion_tokens"] == GREEDY.max_gen_len


def test_stop_strings_of_the_generation_config_cut_the_reply(cm):
    full = cm.generate("Tell me about cats.", GenerationConfig(max_gen_len=30))
    words = re.findall(r"[A-Za-z]{4,}", full)
    assert len(words) >= 3, full
    word = words[2]
    cm.reset_chat()
    cut = cm.generate("Tell me about cats.", GenerationConfig(max_gen_len=30, stop=word))
    assert cut == full[: full.index(word)]


def test_n_returns_several_replies_and_keeps_the_first(cm):
    replies = cm.generate("Hi!", GenerationConfig(n=3, temperature=1.0, seed=11, max_gen_len=8))
    assert isinstance(replies, list) and len(replies) == 3
    assert all(isinstance(r, str) for r in replies)
    assert cm.history[-1] == {"role": "assistant", "content": replies[0]}
    assert cm.stats(verbose=True)["generations"] == 3


def test_bad_generation_settings_are_refused_with_the_field_named(cm):
    with pytest.raises(ValidationError, match="temperature"):
        cm.generate("Hi", GenerationConfig(temperature=9.0))
    with pytest.raises(ValidationError, match="bogus"):
        GenerationConfig(bogus=1)
    with pytest.raises(ValidationError, match="top_p"):
        ChatModule("default", chat_config=ChatConfig(top_p=3.0))
    assert cm.history == []


def test_stats_reads_like_mlc_and_reset_clears_it(cm):
    cm.generate("Hello!")
    assert re.fullmatch(r"prefill: \d+\.\d tok/s, decode: \d+\.\d tok/s", cm.stats())
    verbose = cm.stats(verbose=True)
    assert verbose["prefill"]["total_tokens"] > 0 and verbose["decode"]["total_time"] > 0
    cm.reset_chat()
    assert cm.stats() == "prefill: 0.0 tok/s, decode: 0.0 tok/s"
    assert cm.history == []


def test_reset_chat_with_a_config_changes_the_system_prompt(cm):
    cm.reset_chat(ChatConfig(temperature=0.0, conv_config=ConvConfig(system="Be very sad.")))
    tokens, _ = cm.conversation.tokens("What is one plus one?")
    assert "Be very sad." in cm.engine.detokenize(tokens)
    cm.generate("What is one plus one?")
    cm.reset_chat(GREEDY)
    tokens, _ = cm.conversation.tokens("What is one plus one?")
    assert "Be very sad." not in cm.engine.detokenize(tokens)


def test_a_list_of_messages_replaces_the_conversation(cm):
    cm.generate("First question.")
    chat = [
        {"role": "user", "content": "Hi"},
        ("assistant", "Hello there."),
        {"role": "user", "content": "Bye"},
    ]
    reply = cm.generate(chat)
    assert cm.history[:3] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "Bye"},
    ]
    assert cm.history[3] == {"role": "assistant", "content": reply}
    with pytest.raises(ValueError, match="message 1"):
        cm.generate([{"role": "user", "content": "Hi"}, {"role": "user"}])


def test_ctrl_c_in_a_callback_cancels_the_generation(cm):
    class Interrupt(DeltaCallback):
        def delta_callback(self, delta_message: str) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cm.generate("Write a long story about a dragon.", GenerationConfig(max_gen_len=500), Interrupt())
    wait_until(lambda: cm.engine.stats()["slots_in_use"] == 0, what="the slot freed")
    assert cm.history == []


def test_benchmark_generate_runs_raw_text_and_feeds_stats(cm):
    text = cm.benchmark_generate("Once upon a time", generate_length=20)
    verbose = cm.stats(verbose=True)
    assert text and verbose["generations"] == 1
    assert 1 <= verbose["completion_tokens"] <= 20
    assert verbose["decode"]["total_tokens"] == verbose["completion_tokens"] - 1
    assert cm.history == []
    with pytest.raises(ValueError, match="generate_length"):
        cm.benchmark_generate("Once", generate_length=0)


# -- the raw-text LM template -----------------------------------------------------------------------


def test_lm_template_is_plain_completion_without_memory(engine):
    lm = ChatModule("default", chat_config=ChatConfig(conv_template="LM", temperature=0.0, max_gen_len=10))
    prompt = "Life is a quality that distinguishes"
    tokens, messages = lm.conversation.tokens(prompt)
    assert tokens == engine.tokenize(prompt) and messages == []
    first = lm.generate(prompt)
    assert lm.history == []
    assert lm.generate(prompt) == first  # no memory: the same prompt, the same greedy reply
    # The same text completion as the LangChain LLM with the same settings.
    assert HearthLLM(model="default", temperature=0.0, max_new_tokens=10).invoke(prompt) == first
    with pytest.raises(ValueError, match="raw text"):
        lm.generate([{"role": "user", "content": "Hi"}])


def test_lm_add_bos_and_stop_tokens(engine, caplog):
    bos = engine.tokenize(engine.info.bos_token, add_special=False)
    eos = engine.tokenize(engine.info.eos_token, add_special=False)
    conv = ConvConfig(stop_tokens=eos, add_bos=True, stop_str="[INST]")
    lm = ChatModule("default", chat_config=ChatConfig(conv_template="LM", conv_config=conv))
    tokens, _ = lm.conversation.tokens("Hello")
    assert tokens == bos + engine.tokenize("Hello", add_special=False)
    assert lm.conversation.stop == ("[INST]",)
    with caplog.at_level(logging.WARNING, logger="hearth"):
        ChatModule(
            "default", chat_config=ChatConfig(conv_template="LM", conv_config=ConvConfig(stop_tokens=[5]))
        )
    assert "stop token 5" in caplog.text


# -- configuration layers ---------------------------------------------------------------------------


@pytest.fixture
def model_folder(tmp_path):
    """A folder holding a link to the default model, where a hearth-chat-config.json can go."""
    (tmp_path / "model.gguf").symlink_to(resolve_model("default"))
    return tmp_path


def test_config_file_beside_the_model_is_overridden_field_by_field(engine, model_folder):
    (model_folder / "hearth-chat-config.json").write_text(
        json.dumps(
            {
                "conv_template": "chat-ml",
                "temperature": 0.0,
                "max_gen_len": 5,
                "conv_config": {"system": "From the file.", "stop_str": "XYZ"},
            }
        )
    )
    loads = model_loads()
    code = ChatConfig(max_gen_len=6, conv_config=ConvConfig(system="From code."))
    cm = ChatModule(str(model_folder / "model.gguf"), chat_config=code)
    assert cm.engine is engine and model_loads() == loads  # the same file: the same weights
    assert cm.chat_config.max_gen_len == 6 and cm.chat_config.temperature == 0.0
    assert cm.conversation.conv.system == "From code." and cm.conversation.conv.stop_str == "XYZ"
    assert cm.conversation.template.name == "chat-ml"
    assert cm.conversation.stop == ("<|im_end|>", "XYZ")
    tokens, _ = cm.conversation.tokens("Hi")
    assert (
        cm.engine.detokenize(tokens) == "system\nFrom code.\nuser\nHi\nassistant\n"
    )  # chat-ml, specials hidden
    cm.generate("Hi")
    assert cm.stats(verbose=True)["completion_tokens"] <= 6
    assert ChatModule(str(model_folder)).chat_config.max_gen_len == 5  # the folder works as well


def test_bad_config_files_are_named_in_the_error(model_folder):
    config = model_folder / "hearth-chat-config.json"
    config.write_text("{not json")
    with pytest.raises(ValueError, match="hearth-chat-config.json is not valid JSON"):
        ChatModule(str(model_folder))
    config.write_text(json.dumps({"temprature": 0.5}))
    with pytest.raises(ValueError, match="temprature"):
        ChatModule(str(model_folder))


def test_mlc_compiler_fields_are_accepted_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="hearth"):
        config = ChatConfig(max_gen_len=8, tensor_parallel_shards=2, opt="O3")
    assert config.max_gen_len == 8
    assert "opt" in caplog.text and "tensor_parallel_shards" in caplog.text


def test_unknown_template_lists_the_choices(engine):
    with pytest.raises(prompts.UnknownTemplate, match="chat-ml.*LM"):
        ChatModule("default", chat_config=ChatConfig(conv_template="no-such-template"))


def test_separator_template_renders_mlc_format():
    conv = ConvConfig(
        system="A chat.",
        roles=["USER", "ASSISTANT"],
        seps=[" ", "</s>"],
        role_msg_sep=": ",
        role_empty_sep=":",
    )
    chat = [
        {"role": "system", "content": "A chat."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    text = prompts.render(chat, separator_template(conv)).text
    assert text == "A chat. USER: Hi ASSISTANT: Hello</s>USER: Bye ASSISTANT:"


def test_separator_fields_need_roles_and_seps(engine):
    with pytest.raises(ValueError, match="roles and seps"):
        ChatModule("default", chat_config=ChatConfig(conv_config=ConvConfig(roles=["USER", "BOT"])))


def test_opening_messages_come_before_the_chat(engine):
    conv = ConvConfig(roles=["Q", "A"], seps=["\n"], messages=[["Q", "2+2?"], ["A", "4"]], role_msg_sep=": ")
    cm = ChatModule("default", chat_config=ChatConfig(conv_config=conv))
    tokens, _ = cm.conversation.tokens("3+3?")
    assert cm.engine.detokenize(tokens) == "Q: 2+2?\nA: 4\nQ: 3+3?\nA:"


def test_model_lib_path_is_checked(engine, tmp_path, monkeypatch):
    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="not a file"):
        ChatModule("default", model_lib_path=str(tmp_path / "missing.so"))
    lib = tmp_path / "libllama.so"
    lib.write_bytes(b"")
    with pytest.raises(ValueError, match="LLAMA_CPP_LIB_PATH"):
        ChatModule("default", model_lib_path=str(lib))
    with pytest.raises(ValueError, match="LLAMA_CPP_LIB_PATH"):
        ChatModule("default", lib_path=str(lib))  # MLC's older name
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path))
    assert ChatModule("default", model_lib_path=str(lib)).engine is engine


def test_a_server_url_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match=r"ChatHearth\(model=URL\)"):
        ChatModule("http://127.0.0.1:1/v1")
