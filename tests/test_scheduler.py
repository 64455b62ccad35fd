"""The multi-session scheduler: many conversations on one copy of the weights, each keeping its cache."""

from __future__ import annotations

import threading

import pytest
from support.wait import wait_until

from native import SamplingParams, load_engine
from native.engine import Engine
from native.errors import EngineFailed
from native.kv_tiers import CacheConfig
from native.llama import SamplerChain

GREEDY = SamplingParams(temperature=0, max_new_tokens=64)


def chatml(*turns: str) -> str:
    """A chat-ml prompt of alternating user/assistant turns, ending with the assistant's cue."""
    roles = ["user", "assistant"]
    body = "".join(f"<|im_start|>{roles[i % 2]}\n{t}<|im_end|>\n" for i, t in enumerate(turns))
    return body + "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def two_slots(engine):
    small = Engine(engine.info, engine.device, n_ctx=2048, parallel=2)
    yield small
    small.close()


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    engine = load_engine("gemma-3-270m", models_dir=tmp_path_factory.mktemp("models"), parallel=2)
    yield engine
    engine.close()


def test_greedy_text_is_the_same_alone_and_beside_seven_other_streams(engine):
    prompt = chatml("Write a long story about a dragon.")
    alone = engine.submit(prompt, SamplingParams(temperature=0, max_new_tokens=120), session="alone").result(
        60
    )
    others = [
        engine.submit(
            chatml(f"Tell me about topic {i}."),
            SamplingParams(temperature=0.8, seed=i, max_new_tokens=100),
            session=f"other-{i}",
        )
        for i in range(7)
    ]
    crowded = engine.submit(prompt, SamplingParams(temperature=0, max_new_tokens=120), session="crowd")
    assert crowded.result(120).text == alone.text
    assert all(o.result(120).finish_reason in ("stop", "length") for o in others)


def test_seeded_sampling_is_reproducible_whatever_runs_beside_it(engine):
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7, max_new_tokens=40)
    prompt = chatml("Invent a word.")
    alone = engine.submit(prompt, params, session="seed-a").result(60).text
    noise = [
        engine.submit(chatml("Count to ten."), SamplingParams(temperature=1.0, max_new_tokens=60))
        for _ in range(5)
    ]
    beside = engine.submit(prompt, params, session="seed-b").result(60).text
    for n in noise:
        n.result(60)
    assert beside == alone


def test_eight_concurrent_streams_with_different_settings_all_complete(engine):
    streams = []
    for i in range(8):
        params = SamplingParams(
            temperature=0.1 * i,
            top_k=10 * i,
            repetition_penalty=1.0 + 0.05 * i,
            seed=i,
            max_new_tokens=10 + 5 * i,
        )
        streams.append(
            (
                params,
                engine.submit(chatml(f"Write a long essay about number {i}."), params, session=f"eight-{i}"),
            )
        )
    texts = {}
    threads = [
        threading.Thread(target=lambda i=i, s=s: texts.__setitem__(i, "".join(s)))
        for i, (_, s) in enumerate(streams)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (params, stream) in enumerate(streams):
        c = stream.completion
        assert c.finish_reason in ("stop", "length")
        assert c.usage.completion_tokens <= params.max_new_tokens
        if c.finish_reason == "length":
            assert c.usage.completion_tokens == params.max_new_tokens
        assert texts[i] == c.text


@pytest.fixture
def three_slots(engine):
    small = Engine(engine.info, engine.device, n_ctx=1024, parallel=3)
    yield small
    small.close()


def recorded_batches(engine: Engine) -> tuple[list[list[int]], object]:
    """Start recording the sequence ids of every batch the engine decodes; returns (log, stop)."""
    seen: list[list[int]] = []
    decode = engine._ctx.decode

    def recording(batch):
        seen.append([batch.struct.seq_id[i][0] for i in range(len(batch))])
        decode(batch)

    engine._ctx.decode = recording
    return seen, lambda: engine._ctx.__dict__.pop("decode", None)


def test_a_step_hands_llama_cpp_its_decoding_sequences_in_ascending_order(engine):
    """llama.cpp runs a batch in one pass only when its sequence ids ascend (one KV stream per
    sequence): requests that arrive in another order must still be decoded together."""
    for name in ("order-a", "order-b"):  # each session gets a slot of its own
        one_token = SamplingParams(max_new_tokens=1)
        engine.submit(chatml(f"Hello from {name}."), one_token, session=name).result(60)
    slots = engine._scheduler.slots
    later, earlier = sorted(("order-a", "order-b"), key=lambda n: slots.of_session(n).seq_id, reverse=True)
    seen, stop = recorded_batches(engine)
    try:
        # The higher slot's request arrives first.
        streams = [
            engine.submit(chatml(f"Write a long story about a dragon, {n}."), GREEDY, session=n)
            for n in [later, earlier]
        ]
        for stream in streams:
            stream.result(60)
    finally:
        stop()
    both = [ids for ids in seen if len(ids) == 2 and len(set(ids)) == 2]
    assert len(both) > 10, seen
    assert all(ids == sorted(ids) for ids in both), both


def test_running_sequences_are_put_side_by_side_and_every_cache_survives(engine, three_slots):
    """A runs in slot 0, B's idle cache sits in slot 1 and D starts in slot 2: llama.cpp would take two
    passes per step, so D and B swap slots; A, B and D all answer as if nothing had moved."""
    greedy = SamplingParams(temperature=0, max_new_tokens=60)
    a_first, b_first = chatml("Tell me about cats."), chatml("Hi, I am B.")
    a1 = three_slots.submit(a_first, SamplingParams(temperature=0, max_new_tokens=24), session="A").result(60)
    b1 = three_slots.submit(b_first, SamplingParams(temperature=0, max_new_tokens=8), session="B").result(60)
    slots = three_slots._scheduler.slots
    assert (slots.of_session("A").seq_id, slots.of_session("B").seq_id) == (0, 1)

    a_second, d_first = (
        chatml("Tell me about cats.", a1.text, "And about dogs?"),
        chatml("Count to a hundred."),
    )
    seen, stop = recorded_batches(three_slots)
    try:
        a2, d1 = (
            s.result(60)
            for s in [
                three_slots.submit(a_second, greedy, session="A"),
                three_slots.submit(d_first, greedy, session="D"),
            ]
        )
    finally:
        stop()
    assert three_slots.stats()["cache_swaps_total"] == 1
    assert tuple(slots.of_session(n).seq_id for n in "ADB") == (0, 1, 2)
    pairs = [ids for ids in seen if len(ids) == 2 and len(set(ids)) == 2]
    assert len(pairs) > 10 and all(ids == [0, 1] for ids in pairs), seen

    b_second = chatml("Hi, I am B.", b1.text, "What is my name?")
    b2 = three_slots.submit(b_second, greedy, session="B").result(60)
    # B's cache travelled with it: only its new turn was computed.
    assert b2.usage.cached_tokens >= b1.usage.prompt_tokens + b1.usage.completion_tokens - 1
    # Every reply is the one an engine that never swapped anything gives.
    for prompt, reply in [(a_second, a2), (d_first, d1), (b_second, b2)]:
        fresh = engine.submit(prompt, greedy, session=f"fresh-{prompt[-30:]}").result(60)
        assert reply.text == fresh.text


def test_each_turn_prefills_only_the_new_tokens(engine):
    turns = ["Tell me about cats."]
    previous = None
    for _ in range(4):
        completion = engine.submit(chatml(*turns), GREEDY, session="turn-by-turn").result(60)
        if previous is not None:
            # All of the previous turn is cached, except a reply's last token when it hit the limit.
            expected = previous.usage.prompt_tokens + previous.usage.completion_tokens
            expected -= previous.finish_reason == "length"
            assert completion.usage.cached_tokens == expected
        previous = completion
        turns += [completion.text, "Tell me more."]


def test_stateless_request_reuses_the_slot_with_the_longest_common_prefix(engine):
    system = "You are a meticulous assistant who answers every question in great detail. " * 5
    first = engine.submit(f"<|im_start|>system\n{system}<|im_end|>\n" + chatml("Hi!"), GREEDY).result(60)
    second = engine.submit(f"<|im_start|>system\n{system}<|im_end|>\n" + chatml("Hello!"), GREEDY).result(60)
    assert first.usage.cached_tokens < 10
    assert second.usage.cached_tokens >= len(engine.tokenize(f"<|im_start|>system\n{system}<|im_end|>\n"))


def test_editing_an_earlier_turn_truncates_the_cache_to_the_common_prefix(engine):
    original = chatml("Tell me about cats.", "Cats are nice.", "And about dogs?")
    edited = chatml("Tell me about cats.", "Cats are nice.", "And about birds?")
    engine.submit(original, GREEDY, session="editing").result(60)
    again = engine.submit(edited, GREEDY, session="editing").result(60)
    common = len(
        engine.tokenize(
            chatml("Tell me about cats.", "Cats are nice.")[: -len("<|im_start|>assistant\n")]
            + "<|im_start|>user\nAnd about"
        )
    )
    assert again.usage.cached_tokens == common


def test_evicted_session_gets_the_same_reply_after_its_slot_is_rebuilt(engine):
    """With the cache tiers off (tests/test_kv_tiers.py has them on), an evicted session's cache is
    gone, and computing it again gives the same reply."""
    no_tiers = CacheConfig(cache_ram=0, cache_disk=0)
    two_slots = Engine(engine.info, engine.device, n_ctx=2048, parallel=2, cache=no_tiers)
    try:
        prompt = chatml("Write a poem about the moon.")
        first = two_slots.submit(prompt, GREEDY, session="moon").result(60)
        for name in ("intruder-1", "intruder-2"):  # two other sessions take both slots: "moon" is evicted
            two_slots.submit(chatml(f"Say something about {name}."), GREEDY, session=name).result(60)
        rebuilt = two_slots.submit(prompt, GREEDY, session="moon").result(60)
        assert rebuilt.usage.cached_tokens < first.usage.prompt_tokens - 1  # it really lost its cache
        assert rebuilt.text == first.text
    finally:
        two_slots.close()


def test_a_sessions_second_request_waits_for_its_first(two_slots):
    a = two_slots.submit(
        chatml("Count slowly to fifty."), SamplingParams(temperature=0, max_new_tokens=40), session="patient"
    )
    b = two_slots.submit(
        chatml("Count slowly to fifty."), SamplingParams(temperature=0, max_new_tokens=40), session="patient"
    )
    first, second = a.result(60), b.result(60)
    assert second.usage.cached_tokens == first.usage.prompt_tokens - 1  # same prompt, same slot


def test_cancel_mid_prefill_and_mid_decode(two_slots):
    long_prompt = chatml("word " * 1500)
    stream = two_slots.submit(long_prompt, GREEDY, session="cancel-prefill")
    stream.cancel()
    assert stream.result(60).finish_reason == "cancelled"
    assert stream.result().usage.completion_tokens == 0

    stream = two_slots.submit(
        chatml("Write a very long story."),
        SamplingParams(temperature=0, max_new_tokens=400),
        session="cancel-decode",
    )
    for n, _ in enumerate(stream, start=1):
        if n == 5:
            stream.cancel()
    completion = stream.completion
    assert completion.finish_reason == "cancelled"
    assert 5 <= completion.usage.completion_tokens <= 8


def test_a_thousand_cancelled_requests_leak_nothing(two_slots):
    before = SamplerChain.live
    prompt = chatml("Write a very long story.")
    for i in range(1000):
        stream = two_slots.submit(
            prompt, SamplingParams(temperature=0.5, max_new_tokens=50), session=f"leak-{i % 3}"
        )
        if i % 2:
            stream.cancel()
        else:
            next(iter(stream), None)  # dropped consumer: leaves after the first delta
        stream.result(60)
    stats = two_slots.stats()
    assert SamplerChain.live == before
    assert stats["slots_in_use"] == 0
    assert stats["queue_depth"] == 0
    assert two_slots.submit(prompt, GREEDY).result(60).finish_reason in ("stop", "length")


def test_dead_scheduler_fails_waiting_and_future_requests_clearly(engine):
    doomed = Engine(engine.info, engine.device, n_ctx=512, parallel=1)

    def explode() -> None:
        raise RuntimeError("simulated native crash")

    doomed._scheduler._pack = explode
    stream = doomed.submit(chatml("Hello"), GREEDY)
    with pytest.raises(EngineFailed, match="simulated native crash"):
        "".join(stream)
    doomed._thread.join(10)
    with pytest.raises(EngineFailed, match="simulated native crash"):
        doomed.submit(chatml("Hello"), GREEDY)
    doomed.close()


def test_stats_report_slots_queue_and_cache(two_slots):
    two_slots.submit(chatml("Hi"), GREEDY, session="stats").result(60)
    stats = two_slots.stats()
    assert stats["slots_total"] == 2
    assert len(stats["cached_tokens"]) == 2
    assert max(stats["cached_tokens"]) > 0
    assert stats["decode_tokens_per_s"] > 0
    assert stats["samplers_live"] >= 0
    assert stats["steps_total"] > 0
    assert 0 < stats["llama_decode_seconds_total"] <= stats["step_seconds_total"]
    # A full cache: every layer keeps n_ctx cells of each slot.
    assert stats["kv_cache_bytes"] == two_slots.info.kv_bytes_per_token * two_slots.n_ctx * 2


def test_a_sliding_window_cache_is_counted_at_its_real_size(gemma):
    full = gemma.info.kv_bytes_per_token * gemma.n_ctx * gemma.parallel
    # Gemma 3 keeps the whole context in 1 layer of 6; the others keep their 512-token window.
    assert full / 3 < gemma.stats()["kv_cache_bytes"] < full / 2


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_gemma_long_conversation_reuses_cache_past_the_sliding_window(gemma):
    assert gemma.info.sliding_window == 512
    params = SamplingParams(temperature=0, max_new_tokens=200, repetition_penalty=1.3)
    turns: list[tuple[str, str]] = []
    prompt = ""
    previous, previous_prompt = None, ""
    for i in range(7):
        prompt = "".join(
            f"<start_of_turn>user\n{u}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n"
            for u, a in turns
        )
        prompt += (
            f"<start_of_turn>user\nTell me part {i + 1} of a long story.<end_of_turn>\n<start_of_turn>model\n"
        )
        completion = gemma.submit(prompt, params, session="gemma-long").result(120)
        if previous is not None:
            # The cache holds the previous prompt and reply as sampled (a reply cut by the limit lacks
            # its last token); all of it the new prompt starts with is reused. The reply's text read
            # back can tokenize differently from how it was sampled, which ends the shared part there.
            held = gemma.tokenize(previous_prompt) + list(previous.token_ids)
            held = held[: len(held) - (previous.finish_reason == "length")]
            assert completion.usage.cached_tokens == common_prefix(held, gemma.tokenize(prompt))
            assert completion.usage.cached_tokens > 0.8 * len(held)
        previous, previous_prompt = completion, prompt
        turns.append((f"Tell me part {i + 1} of a long story.", completion.text))
    assert previous.usage.prompt_tokens > 1000
    # The same last prompt computed from scratch in another slot gives the same reply.
    cold = gemma.submit(prompt, params, session="gemma-cold").result(120)
    assert cold.usage.cached_tokens == 0
    assert cold.text == previous.text


def gemma_chat(turns: list[tuple[str, str]], question: str) -> str:
    done = "".join(
        f"<start_of_turn>user\n{u}<end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n" for u, a in turns
    )
    return done + f"<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_edits_before_and_inside_the_window_give_from_scratch_replies(gemma):
    """The cache keeps Gemma's 512-token window (and one batch more, before it overwrites older cells):
    rolling back past what it kept must start the sequence over (cached 0), rolling back inside the
    window keeps the prefix; either way the reply is the from-scratch one."""
    params = SamplingParams(temperature=0, max_new_tokens=40)
    story = [(f"Tell me part {i} of a story about a lighthouse.", "word " * 120) for i in range(10)]
    long = gemma_chat(story, "And then?")
    first = gemma.submit(long, params, session="gemma-edit").result(120)
    assert first.usage.prompt_tokens > 512 + 512 + 100

    story = [("Tell me about the sea instead.", "word " * 120), *story[1:]]
    edited_early = gemma_chat(story, "And then?")
    early = gemma.submit(edited_early, params, session="gemma-edit").result(120)
    assert early.usage.cached_tokens == 0  # the shared prefix lies outside the window the cache kept

    edited_late = gemma_chat(story, "And after that?")  # the last question edited: a short roll-back
    late = gemma.submit(edited_late, params, session="gemma-edit").result(120)
    shared = len(gemma.tokenize(gemma_chat(story, "")))  # up to the last question
    assert late.usage.cached_tokens >= shared - 5

    for prompt, warm in ((edited_early, early), (edited_late, late)):
        cold = gemma.submit(prompt, params, session="gemma-edit-cold").result(120)
        assert cold.text == warm.text


def test_waiting_requests_know_their_place_in_the_queue(two_slots):
    endless = SamplingParams(temperature=0, repetition_penalty=1.0, max_new_tokens=2000)
    busy = [two_slots.submit(chatml(f"Count to a thousand, take {i}."), endless) for i in range(2)]
    queued = [two_slots.submit(chatml(f"Say hello {i}."), endless) for i in range(3)]
    wait_until(lambda: [s.queue_position for s in queued] == [1, 2, 3], what="places 1, 2, 3")
    assert [s.queue_position for s in busy] == [None, None]  # they have their slots
    busy[0].cancel()  # a slot frees up: the first in line takes it, the others move up
    wait_until(lambda: [s.queue_position for s in queued] == [None, 1, 2], what="places None, 1, 2")
    assert next(iter(queued[0]))  # it has a slot: its reply streams
    for stream in [busy[1], *queued]:
        stream.cancel()
    assert [s.result(60).finish_reason for s in queued] == ["cancelled"] * 3
    assert [s.queue_position for s in queued] == [None, None, None]


def test_gemma_sliding_window_cache_survives_a_swap(gemma):
    """B's idle cache (past the 512-token window) is swapped out of the way of two running sequences;
    its next turn equals the same turns in an engine where nothing moved."""
    three = Engine(gemma.info, gemma.device, n_ctx=2048, parallel=3)
    try:
        params = [SamplingParams(temperature=0, max_new_tokens=n) for n in (8, 60)]
        b_first = gemma_chat([], "Hi, I am B. " + ", ".join(f"thing {i}" for i in range(150)))
        three.submit(gemma_chat([], "Tell me about cats."), params[0], session="A").result(120)
        b1 = three.submit(b_first, params[0], session="B").result(120)
        assert b1.usage.prompt_tokens > 512
        b_second = gemma_chat([(b_first.split("\n")[1].removesuffix("<end_of_turn>"), b1.text)], "Who am I?")
        running = [
            three.submit(gemma_chat([], "Tell me about dogs."), params[1], session="A"),
            three.submit(gemma_chat([], "Count to a hundred."), params[1], session="D"),
        ]
        for stream in running:
            stream.result(120)
        assert three.stats()["cache_swaps_total"] == 1
        assert three._scheduler.slots.of_session("B").seq_id == 2
        b2 = three.submit(b_second, params[1], session="B").result(120)
    finally:
        three.close()
    assert b2.usage.cached_tokens == b1.usage.prompt_tokens + b1.usage.completion_tokens - 1
    # The same turns, with the same prefill and decode steps, where no cache moved.
    gemma.submit(b_first, params[0], session="B-still").result(120)
    still = gemma.submit(b_second, params[1], session="B-still").result(120)
    assert still.usage.cached_tokens == b2.usage.cached_tokens
    assert b2.text == still.text
