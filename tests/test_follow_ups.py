"""Follow-ups: while a session is idle after a reply, the engine computes the chat template's turn
separator into its cache, so the next turn prefills fewer tokens, and the reply is the same."""

from __future__ import annotations

import time

import pytest
from langchain_core.messages import HumanMessage

import prompts
from llm import ChatHearth, GenerationSettings, build_chain
from llm._base import model_template
from llm.mlc import ChatConfig, ChatModule
from llm.nano import ChatHistory, NanoLLM
from native import SamplingParams
from native.scheduler import FOLLOW_UP_DELAY

GREEDY = SamplingParams(temperature=0, max_new_tokens=48)
SEPARATOR = "<|im_end|>\n<|im_start|>user\n"
FIRST = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


def second(reply: str) -> str:
    return FIRST + reply + SEPARATOR + "And three animals?<|im_end|>\n<|im_start|>assistant\n"


def idle() -> None:
    """A person reading the reply. The time passing is the behaviour under test: an idle session's
    follow-up falls due in it (and the tests count whether one ran), so there is nothing to wait on."""
    time.sleep(FOLLOW_UP_DELAY + 0.25)


def follow_ups(engine) -> int:
    return engine.stats()["follow_ups_total"]


def two_turns(engine, session: str, sampling: SamplingParams, *, follow: str | None, wait: bool):
    """Two turns of a session of its own user: its cache is its own (no other session's turns with
    the same text serve it), so what its follow-up added can be counted."""
    first = engine.submit(FIRST, sampling, session=session, followed_by=follow, user=session).result(60)
    if wait:
        idle()
    return first, engine.submit(second(first.text), sampling, session=session, user=session).result(60)


def test_the_separator_of_an_idle_session_is_cached_ahead_and_the_reply_is_the_same(engine):
    separator_tokens = len(engine.tokenize(SEPARATOR, add_special=False))
    before = follow_ups(engine)
    plain_first, plain = two_turns(engine, "fu-plain", GREEDY, follow=None, wait=True)
    assert follow_ups(engine) == before
    first, ahead = two_turns(engine, "fu-ahead", GREEDY, follow=SEPARATOR, wait=True)
    assert first.finish_reason == "stop" and first.text == plain_first.text
    assert follow_ups(engine) == before + 1
    assert ahead.usage.cached_tokens == plain.usage.cached_tokens + separator_tokens
    assert ahead.usage.prompt_tokens == plain.usage.prompt_tokens
    assert ahead.text == plain.text


def test_a_next_turn_sent_at_once_computes_the_separator_with_its_prompt(engine):
    _, plain = two_turns(engine, "fu-plain-now", GREEDY, follow=None, wait=False)
    before = follow_ups(engine)
    _, at_once = two_turns(engine, "fu-now", GREEDY, follow=SEPARATOR, wait=False)
    assert follow_ups(engine) == before
    assert at_once.usage.cached_tokens == plain.usage.cached_tokens
    assert at_once.text == plain.text


def test_a_reply_cut_at_its_length_brings_its_last_token_into_the_cache_too(engine):
    short = SamplingParams(temperature=0, max_new_tokens=6)
    separator_tokens = len(engine.tokenize(SEPARATOR, add_special=False))
    first, plain = two_turns(engine, "fu-length-plain", short, follow=None, wait=True)
    assert first.finish_reason == "length"
    _, ahead = two_turns(engine, "fu-length", short, follow=SEPARATOR, wait=True)
    # Without the follow-up the sixth token was sampled but never decoded.
    assert ahead.usage.cached_tokens == plain.usage.cached_tokens + 1 + separator_tokens
    assert ahead.text == plain.text


def test_a_next_prompt_without_the_separator_cuts_it_off(engine):
    first = engine.submit(FIRST, GREEDY, session="fu-regenerate", followed_by=SEPARATOR).result(60)
    idle()
    cached = engine.stats()["cached_tokens"]
    assert max(cached) >= first.usage.prompt_tokens + first.usage.completion_tokens
    again = engine.submit(FIRST, GREEDY, session="fu-regenerate").result(60)  # regenerate
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
    assert again.text == first.text


def test_a_stop_string_or_a_stateless_request_gets_no_follow_up(engine):
    before = follow_ups(engine)
    words = engine.submit(FIRST, GREEDY).result(60).text.split()
    stopped = SamplingParams(temperature=0, max_new_tokens=48, stop=(words[1],))
    engine.submit(FIRST, stopped, session="fu-stop", followed_by=SEPARATOR).result(60)
    engine.submit(FIRST, GREEDY, followed_by=SEPARATOR).result(60)
    idle()
    assert follow_ups(engine) == before


def test_a_follow_up_longer_than_a_separator_is_refused(engine):
    with pytest.raises(ValueError, match="followed_by"):
        engine.submit(FIRST, GREEDY, session="fu-long", followed_by="word " * 200)


def test_follow_ups_run_beside_other_streams(engine):
    """A follow-up that falls due while another session decodes goes into that session's steps."""
    long = SamplingParams(temperature=0, max_new_tokens=200)
    alone = engine.submit(FIRST.replace("colours", "rivers"), long).result(60)
    before = follow_ups(engine)
    engine.submit(FIRST, GREEDY, session="fu-beside", followed_by=SEPARATOR).result(60)
    beside = engine.submit(FIRST.replace("colours", "rivers"), long, session="fu-other")
    idle()
    assert not beside.done
    assert follow_ups(engine) == before + 1
    assert beside.result(60).text == alone.text


def test_the_models_own_template_gives_the_separator_the_engine_uses(engine):
    template = model_template(engine.info)
    assert prompts.turn_separator(template) == SEPARATOR


def test_chat_hearth_asks_for_the_follow_up_and_the_apps_chain_turns_it_on(engine):
    chain = build_chain(engine, GenerationSettings(temperature=0.0, max_new_tokens=24), session_id="fu-app")
    assert chain.llm.prefill_next_turn
    assert not ChatHearth(engine=engine).prefill_next_turn  # a library user opts in

    def two_turns(chat: ChatHearth) -> int:
        history = [HumanMessage("Tell me about cats.")]
        first = chat.invoke(history)
        assert first.response_metadata["finish_reason"] == "length"  # its last token is not cached yet
        idle()
        second = chat.invoke([*history, first, HumanMessage("And dogs?")])
        return second.usage_metadata["input_token_details"]["cache_read"]

    before = follow_ups(engine)
    lib = ChatHearth(engine=engine, temperature=0.0, max_new_tokens=24, session_id="fu-lib", user="fu-lib")
    plain = two_turns(lib)
    assert follow_ups(engine) == before
    app = chain.llm.model_copy(update={"session_id": "fu-app-2", "user": "fu-app-2"})
    ahead = two_turns(app)
    assert follow_ups(engine) == before + 1
    assert ahead == plain + 1 + len(engine.tokenize(SEPARATOR, add_special=False))


def test_chat_module_asks_for_the_follow_up_when_told(engine):
    config = ChatConfig(temperature=0.0, max_gen_len=12)
    separator_tokens = len(engine.tokenize(SEPARATOR, add_special=False))

    def two_turns(cm: ChatModule) -> tuple[int, int]:
        cm.generate("Name three colours.")
        first = cm.stats(verbose=True)
        idle()
        cm.generate("And three animals?")
        second = cm.stats(verbose=True)
        cached = second["prefill"]["cached_tokens"] - first["prefill"]["cached_tokens"]
        return first["completion_tokens"], cached

    assert not ChatModule(model="default", chat_config=config).prefill_next_turn  # a library user opts in
    idle()  # the tests before may have left a follow-up due
    before = follow_ups(engine)
    # Each of its own user: the second chat's turns are not served from the first's cache.
    replied, plain = two_turns(ChatModule(model="default", chat_config=config, user="fu-mlc-plain"))
    assert follow_ups(engine) == before
    assert replied == 12  # cut at max_gen_len: its last token is not cached without a follow-up
    ahead_module = ChatModule(model="default", chat_config=config, prefill_next_turn=True, user="fu-mlc")
    _, ahead = two_turns(ahead_module)
    assert follow_ups(engine) == before + 1
    assert ahead == plain + 1 + separator_tokens


def test_chat_history_asks_for_the_follow_up_when_told(engine):
    model = NanoLLM.from_pretrained("default")
    separator_tokens = len(engine.tokenize(SEPARATOR, add_special=False))

    def turn(history: ChatHistory, text: str):
        history.append(role="user", msg=text)
        embedding, position = history.embed_chat()
        stop = history.template.stop
        reply = model.generate(embedding, kv_cache=history.kv_cache, stop_tokens=stop, max_new_tokens=12)
        history.append(role="bot", text="".join(reply))
        history.kv_cache = reply.kv_cache
        return position, reply.completions[-1]

    idle()
    before = follow_ups(engine)
    history = ChatHistory(model, prefill_next_turn=True)
    _, first = turn(history, "Name three colours.")
    assert history.kv_cache.followed_by == SEPARATOR
    idle()
    position, second = turn(history, "And three animals?")
    assert follow_ups(engine) == before + 1
    cut = 1 if first.finish_reason == "length" else 0  # the follow-up computes the reply's last token too
    assert second.usage.cached_tokens == position + cut + separator_tokens
    assert ChatHistory(model).kv_cache is None  # without it, nothing is asked for
