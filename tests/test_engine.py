"""The engine contract of DESIGN.md, against the real default model."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest

from native import Completion, SamplingParams, load_engine, model_loads
from native.engine import Engine
from native.errors import ContextOverflow, EngineBusy, EngineFailed, InvalidGrammar
from native.sampling import json_grammar

GREEDY = SamplingParams(temperature=0, max_new_tokens=32)


def test_installed_build_decodes_and_is_greedy_deterministic(engine, chat_prompt):
    first = engine.submit(chat_prompt, GREEDY)
    text = "".join(first)
    again = engine.submit(chat_prompt, GREEDY)
    assert len(text) > 20
    assert "".join(again) == text
    assert first.completion.text == text


def test_load_engine_returns_the_same_engine_and_loads_nothing(engine):
    loads = model_loads()
    assert load_engine("default") is engine
    assert load_engine(None) is engine
    assert model_loads() == loads


def test_max_new_tokens_gives_exactly_that_many_tokens_and_length(engine, chat_prompt):
    stream = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=7))
    completion = stream.result(timeout=60)
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 7
    assert len(engine.tokenize(completion.text, add_special=False)) <= 8


def test_one_token_reply(engine, chat_prompt):
    completion = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=1)).result(60)
    assert completion.usage.completion_tokens == 1
    assert completion.text.strip()


def test_stop_string_ends_generation_and_never_leaks(engine, chat_prompt):
    full = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=60)).result(60).text
    words = full.split()
    stop = words[4]  # a word in the middle of the greedy reply
    stream = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=60, stop=(stop,)))
    deltas = list(stream)
    text = "".join(deltas)
    assert stream.completion.finish_reason == "stop"
    assert stop not in text
    # The streamed text is exactly the reply up to the stop string: not even part of it leaked.
    assert text == full[: full.index(stop)]


def test_end_of_generation_token_finishes_with_stop(engine):
    prompt = "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"
    completion = engine.submit(prompt, SamplingParams(temperature=0, max_new_tokens=200)).result(60)
    assert completion.finish_reason == "stop"
    assert "<|im_end|>" not in completion.text


def test_usage_counts_match_the_tokenizer(engine, chat_prompt):
    completion = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=16)).result(60)
    assert completion.usage.prompt_tokens == len(engine.tokenize(chat_prompt))
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 16


def test_second_turn_prefills_only_new_tokens(engine, chat_prompt):
    first = engine.submit(chat_prompt, GREEDY, session="turns").result(60)
    follow_up = (
        chat_prompt + first.text + "<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    second = engine.submit(follow_up, GREEDY, session="turns").result(60)
    # Everything up to the reply is cached; the reply's last token was sampled, never decoded.
    assert second.usage.cached_tokens >= first.usage.prompt_tokens + first.usage.completion_tokens - 1
    assert second.usage.cached_tokens < second.usage.prompt_tokens


def test_cached_and_uncached_replies_are_identical(engine, chat_prompt):
    engine.submit(chat_prompt, GREEDY).result(60)
    warm = engine.submit(chat_prompt, GREEDY).result(60)
    # No cache is shared between users: a new user's request computes its prompt from scratch.
    cold = engine.submit(chat_prompt, GREEDY, user=f"new-{uuid.uuid4()}").result(60)
    assert warm.usage.cached_tokens == warm.usage.prompt_tokens - 1
    assert cold.usage.cached_tokens == 0
    assert cold.text == warm.text


def test_seeded_sampling_is_reproducible(engine, chat_prompt):
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234, max_new_tokens=24)
    a = engine.submit(chat_prompt, params).result(60).text
    b = engine.submit(chat_prompt, params).result(60).text
    other = engine.submit(chat_prompt, SamplingParams(**{**params.__dict__, "seed": 99})).result(60).text
    assert a == b
    assert a != other


def test_cancel_stops_within_a_few_tokens(engine, chat_prompt):
    stream = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=500))
    for seen, _ in enumerate(stream, start=1):
        if seen == 3:
            stream.cancel()
    completion = stream.completion
    assert completion.finish_reason == "cancelled"
    assert completion.usage.completion_tokens <= 6


def test_consumer_that_stops_iterating_cancels(engine, chat_prompt):
    stream = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=500))
    for _ in stream:
        break
    completion = stream.result(timeout=30)
    assert completion.finish_reason == "cancelled"
    assert completion.usage.completion_tokens < 20


def test_multibyte_characters_come_out_whole(engine):
    text = "日本語のテキスト 🔥🔥 café"
    prompt = f"<|im_start|>user\nRepeat exactly: {text}<|im_end|>\n<|im_start|>assistant\n"
    # The grammar holds the reply to exactly this text (left to itself, a tiny model's greedy reply may
    # hold bytes that are not UTF-8 at all, whose U+FFFD is right), so every delta is checked.
    grammar = 'root ::= "' + text + '"'
    stream = engine.submit(prompt, SamplingParams(temperature=0, max_new_tokens=40, grammar=grammar))
    deltas = list(stream)
    assert "".join(deltas) == stream.completion.text == text
    assert all("\ufffd" not in d for d in deltas)
    assert stream.completion.finish_reason == "stop"
    tokens = engine.tokenize("🔥", add_special=False)
    assert len(tokens) > 1  # the emoji spans several tokens, so whole-character output is a real check
    assert len(deltas) < stream.completion.usage.completion_tokens  # so some tokens waited for the rest


async def test_async_iteration_streams_the_same_text(engine, chat_prompt):
    sync_text = engine.submit(chat_prompt, GREEDY).result(60).text
    stream = engine.submit(chat_prompt, GREEDY)
    deltas = [d async for d in stream]
    assert "".join(deltas) == sync_text
    assert len(deltas) > 5


async def test_a_slow_async_consumer_gets_joined_deltas_that_add_up(engine, chat_prompt):
    expected = engine.submit(chat_prompt, GREEDY).result(60)
    stream = engine.submit(chat_prompt, GREEDY)
    await asyncio.to_thread(stream.result, 60)  # the consumer lags the whole generation behind
    pieces = [piece async for piece in stream.ajoined()]
    assert pieces == [expected.text]  # everything that had arrived comes as one piece
    live = engine.submit(chat_prompt, GREEDY)
    assert "".join([piece async for piece in live.ajoined()]) == expected.text


async def test_a_paced_consumer_gets_a_piece_per_interval_and_the_end_at_once(engine, chat_prompt):
    expected = engine.submit(chat_prompt, GREEDY).result(60)
    started = time.monotonic()
    pieces = [piece async for piece in engine.submit(chat_prompt, GREEDY).ajoined(interval=30.0)]
    # The first delta comes at once; the rest arrive during the 30 s pause, which the end cuts short.
    assert "".join(pieces) == expected.text
    assert len(pieces) == 2
    assert time.monotonic() - started < 30
    paced = [piece async for piece in engine.submit(chat_prompt, GREEDY).ajoined(interval=0.05)]
    assert "".join(paced) == expected.text
    assert 2 <= len(paced) < expected.usage.completion_tokens  # tokens come faster than 20 a second


async def test_cancelled_async_consumer_cancels_generation(engine, chat_prompt):
    stream = engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=500))

    streaming = asyncio.Event()

    async def consume():
        async for _ in stream:
            streaming.set()
            await asyncio.sleep(0)

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(streaming.wait(), 60)  # cancelled mid-stream, not before it starts
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    completion = await asyncio.to_thread(stream.result, 30)
    assert completion.finish_reason == "cancelled"


def test_prompt_that_cannot_fit_is_refused_before_any_work(engine):
    requests = engine.stats()["requests_total"]
    with pytest.raises(ContextOverflow) as info:
        engine.submit("word " * (engine.n_ctx + 10), GREEDY)
    assert info.value.context_size == engine.n_ctx
    assert info.value.prompt_tokens > engine.n_ctx
    assert engine.stats()["requests_total"] == requests


def test_empty_prompt_is_refused(engine):
    with pytest.raises(ValueError):
        engine.submit([], GREEDY)


def test_full_queue_raises_engine_busy_at_once(engine, chat_prompt):
    small = Engine(engine.info, engine.device, n_ctx=512, max_queue=1)
    try:
        streams, busy = [], 0
        for _ in range(6):
            try:
                streams.append(small.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=64)))
            except EngineBusy:
                busy += 1
        assert busy >= 1
        for s in streams:
            assert isinstance(s.result(timeout=60), Completion)
    finally:
        small.close()


def test_closed_engine_fails_clearly(engine, chat_prompt):
    small = Engine(engine.info, engine.device, n_ctx=256)
    small.close()
    small.close()  # twice is fine
    with pytest.raises(EngineFailed):
        small.submit(chat_prompt, GREEDY)


def test_concurrent_submitters_all_complete(engine, chat_prompt):
    results: list[Completion] = []

    def ask(n: int) -> None:
        results.append(
            engine.submit(chat_prompt, SamplingParams(temperature=0, max_new_tokens=n)).result(120)
        )

    threads = [threading.Thread(target=ask, args=(4 + i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.usage.completion_tokens for r in results) == [4, 5, 6, 7]
    assert all(r.finish_reason == "length" for r in results)


def test_stats_are_cheap_and_meaningful(engine, chat_prompt):
    engine.submit(chat_prompt, GREEDY).result(60)
    stats = engine.stats()
    assert stats["requests_total"] >= 1
    assert stats["decode_tokens_per_s"] > 0
    assert stats["cached_tokens"][0] > 0
    assert stats["queue_depth"] == 0


def test_json_schema_grammar_constrains_the_output(engine):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    prompt = "<|im_start|>user\nGive me a person as JSON.<|im_end|>\n<|im_start|>assistant\n"
    params = SamplingParams(temperature=0.7, seed=3, max_new_tokens=80, grammar=json_grammar(schema))
    value = json.loads(engine.submit(prompt, params).result(60).text)
    assert set(value) == {"name", "age"}
    assert isinstance(value["age"], int)


def test_grammar_with_repetition_penalty_completes(engine):
    prompt = "<|im_start|>user\nGive me JSON.<|im_end|>\n<|im_start|>assistant\n"
    params = SamplingParams(temperature=0, max_new_tokens=60, repetition_penalty=1.1, grammar=json_grammar())
    assert isinstance(json.loads(engine.submit(prompt, params).result(60).text), dict)


def test_bad_grammar_is_a_clear_error_and_the_engine_goes_on(engine, chat_prompt):
    with pytest.raises(InvalidGrammar):
        json_grammar({"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}})
    with pytest.raises(InvalidGrammar):
        engine.submit(chat_prompt, SamplingParams(max_new_tokens=4, grammar="root ::= ("))
    assert engine.submit(chat_prompt, GREEDY).result(60).finish_reason in ("stop", "length")


def test_a_request_whose_sampler_fails_is_refused_alone(engine, chat_prompt, monkeypatch):
    import native.scheduler

    def broken(params, model):
        raise RuntimeError("sampler could not be built")

    monkeypatch.setattr(native.scheduler, "build_sampler", broken)
    completion = engine.submit(chat_prompt, GREEDY).result(60)
    monkeypatch.undo()
    assert completion.finish_reason == "error"
    assert "sampler could not be built" in completion.error
    assert engine.submit(chat_prompt, GREEDY).result(60).finish_reason in ("stop", "length")
