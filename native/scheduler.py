"""The scheduler: the one thread that owns a llama.cpp context, and its step loop.

Each step (continuous batching):
  1. admit   - give waiting requests an idle slot; reuse the slot's cached prefix, cut the rest
  2. reap    - finish requests that were cancelled (mid-prefill or mid-decode)
  3. pack    - one token for every decoding sequence, then prefill chunks of admitted prompts,
               up to n_batch tokens, so running streams keep flowing while a long prompt is read
  4. decode  - one llama_decode for the whole batch
  5. sample  - each sequence whose logits came out samples with its own chain and streams its text

Follow-ups: a reply that ends at its end-of-turn token (or its length) leaves the session's slot
holding the prompt and the reply. Its next prompt will repeat them and add the chat template's turn
separator, the new message and the assistant header. When the request said what that separator is
(`followed_by`), the scheduler computes it into the cache once the slot has been idle for
FOLLOW_UP_DELAY, packed beside whatever else is running, so the next turn's prefill is shorter by
those tokens. A session that sends its next turn sooner simply computes them with its prompt.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from dataclasses import dataclass

from native.errors import StepFailed
from native.kv_tiers import CacheConfig, owner_key
from native.llama import Batch, Context, Model
from native.prefix_cache import PrefixCache
from native.sampling import build_sampler
from native.sequence import Active, Request
from native.slots import Slot, SlotState, SlotTable, window_kept
from native.stream import Completion, Timings, Usage

log = logging.getLogger("hearth.engine")

EMA = 0.2  # weight of the newest step in the moving tok/s figures
MOVE_WORTH = 32  # tokens a sequence must still have to generate before its cache is swapped
# Seconds a finished session waits before its follow-up is computed. A client that sends its next
# turn at once (a script, a benchmark) then computes those tokens with its prompt in one pass instead
# of waiting behind a pass of their own; a person reading the reply leaves far more time than this.
FOLLOW_UP_DELAY = 0.05


@dataclass
class FollowUp:
    """Tokens to append to an idle slot's cache once `due` (perf_counter) has passed."""

    slot: Slot
    tokens: list[int]
    due: float


class Scheduler:
    def __init__(
        self,
        model: Model,
        ctx: Context,
        n_slots: int,
        inbox: queue.Queue,
        name: str = "",
        n_swa: int = 0,
        cache: PrefixCache | None = None,
    ) -> None:
        """`name`: the model's, for the log (several engines may serve one process). `n_swa`: the
        sliding window when the cache keeps only the window (0: it keeps everything). `cache`: the
        prefix cache over slots, RAM and disk (default: the `HEARTH_CACHE_*` settings, no disk)."""
        self.model, self.ctx = model, ctx
        self.name = name
        self.n_swa = n_swa
        self.batch = Batch(ctx.n_batch)
        self.cache = cache or PrefixCache(ctx, n_swa, CacheConfig(cache_disk=0))
        self.slots = SlotTable(n_slots, self.cache.config.slot_similarity)
        self.inbox = inbox
        self.waiting: deque[Request] = deque()
        self.active: list[Active] = []
        self.follow_ups: list[FollowUp] = []
        self.follow_ups_done = 0  # follow-ups computed into a cache
        self.stopping = False
        self.requests = 0
        self.prefill_rate = 0.0
        self.decode_rate = 0.0
        self.steps = 0
        self.swaps = 0  # swaps of caches that put running sequences side by side
        self.step_seconds = 0.0  # whole steps: pack, decode, sample, stream
        self.decode_seconds = 0.0  # inside llama_decode: the rest of a step is this loop's overhead

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> str | None:
        """Serve until told to stop; returns why the loop died, or None after a clean stop."""
        try:
            while not self.stopping:
                self._admit(block=not self.active and not self.waiting)
                self._reap()
                if self.active or self._due_follow_ups():
                    self._step()
                self.cache.write_due(self.slots.slots)
            self.cache.write_due(self.slots.slots, everything=True)  # a clean stop keeps every session
            return None
        except BaseException as exc:  # a dead scheduler must tell everyone, never leave them hanging
            log.exception("scheduler died")
            return f"{type(exc).__name__}: {exc}"

    def fail_everything(self, reason: str) -> None:
        for active in self.active:
            self._finish(active, "error", reason)
        pending = list(self.waiting)
        self.waiting.clear()
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Request):
                pending.append(item)
            elif item is not None:
                item()  # a control (forgetting a session) still runs: it only drops caches
        for request in pending:
            request.stream.finish(_unserved(request, "error", reason))
        self.batch.close()

    # -- 1. admit -----------------------------------------------------------------------------------

    def _admit(self, block: bool) -> None:
        try:
            self._take_requests(block)
        finally:
            self._number_the_queue()

    def _take_requests(self, block: bool) -> None:
        still_waiting: deque[Request] = deque()
        while self.waiting:
            request = self.waiting.popleft()
            if not self._start(request):
                still_waiting.append(request)
        self.waiting = still_waiting
        while self.slots.idle() or block:
            # An idle loop still wakes up for the next follow-up or disk write that falls due.
            timeout = None
            if block:
                timeout = self._until_due()
            try:
                request = self.inbox.get(block=block, timeout=timeout)
            except queue.Empty:
                return
            block = False
            if request is None:
                self.stopping = True
                return
            if not isinstance(request, Request):
                request()  # a control: runs here, where the context may be touched
                continue
            if not self._start(request):
                self.waiting.append(request)

    def _until_due(self) -> float | None:
        waits = [f.due - time.perf_counter() for f in self.follow_ups]
        if (disk := self.cache.next_due()) is not None:
            waits.append(disk - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def _number_the_queue(self) -> None:
        """Tell each waiting request its place (the app shows it); the inbox's are behind `waiting`."""
        if not self.waiting and not self.inbox.qsize():
            return
        with self.inbox.mutex:
            queued = list(self.inbox.queue)
        requests = [r for r in [*self.waiting, *queued] if isinstance(r, Request)]
        for place, request in enumerate(requests, 1):
            request.stream.queue_position = place

    def _start(self, request: Request) -> bool:
        """Give the request a slot and set up its prefill; False if it has to wait."""
        if request.stream.cancelled:
            request.stream.finish(_unserved(request, "cancelled"))
            return True
        try:
            sampler = build_sampler(request.sampling, self.model)
        except Exception as exc:  # one bad request must not take the scheduler down
            request.stream.finish(_unserved(request, "error", f"{type(exc).__name__}: {exc}"))
            return True
        running = {a.slot.seq_id for a in self.active}
        owner = owner_key(request.user)
        slot = self.slots.choose(request.tokens, request.session, running, owner)
        if slot is None:
            sampler.close()
            return False
        # The prompt brings whatever a pending follow-up of this slot would have computed.
        self.follow_ups = [f for f in self.follow_ups if f.slot is not slot]
        request.stream.queue_position = None
        self.requests += 1
        self.cache.busy(slot)
        reused, source = self.cache.prepare(slot, request.tokens, owner)
        if reused == len(request.tokens):
            reused -= 1  # everything is cached: replay the last token to get fresh logits
        if reused < len(slot.tokens) and (
            not self._window_kept(slot.seq_id, reused) or not self.ctx.forget(slot.seq_id, reused)
        ):
            self.ctx.forget(slot.seq_id)  # this cache cannot be cut there: start the sequence over
            reused, source = 0, None
        del slot.tokens[reused:]
        self.cache.count_hit(source, reused)
        slot.state = SlotState.PREFILL
        if request.sampling.penalises and not request.sampling.grammar:
            # Penalties look at recent tokens; the prompt's tail counts, as in llama.cpp's server. Not with
            # a grammar: accepting text the grammar never produced aborts the process inside llama.cpp.
            for token in request.tokens[-request.sampling.penalty_last_n :]:
                sampler.accept(token)
        self.active.append(Active(request, slot, sampler, reused, source))
        return True

    def _window_kept(self, seq_id: int, position: int) -> bool:
        return window_kept(self.ctx.pos_min(seq_id), position, self.n_swa)

    # -- 2. reap ------------------------------------------------------------------------------------

    def _reap(self) -> None:
        for active in [a for a in self.active if a.request.stream.cancelled]:
            self._finish(active, "cancelled")

    # -- 3, 4, 5. pack, decode, sample --------------------------------------------------------------

    def _step(self) -> None:
        started = time.perf_counter()
        self._close_gaps()
        outputs, n_decode, n_prefill, follow_ups = self._pack()
        if not len(self.batch):
            return
        decode_started = time.perf_counter()
        try:
            self.ctx.decode(self.batch)
        except Exception as exc:
            # The batch's sequences are in an unknown state: drop their caches, fail their requests.
            log.exception("decode failed")
            for follow_up in follow_ups:
                self.ctx.forget(follow_up.slot.seq_id)
                follow_up.slot.tokens.clear()
                self.cache.busy(follow_up.slot)  # nothing left to index
            for active in list(self.active):
                self.ctx.forget(active.slot.seq_id)
                active.slot.tokens.clear()
                self._finish(active, "error", f"{type(exc).__name__}: {exc}")
            return
        self.follow_ups_done += len(follow_ups)
        decoded = time.perf_counter()
        for active, index in outputs:
            self._sample(active, index)
        elapsed = max(time.perf_counter() - started, 1e-9)
        self.steps += 1
        self.step_seconds += elapsed
        self.decode_seconds += decoded - decode_started
        if n_decode:
            self.decode_rate = _ema(self.decode_rate, n_decode / elapsed)
        if n_prefill:
            self.prefill_rate = _ema(self.prefill_rate, n_prefill / elapsed)

    def _close_gaps(self) -> None:
        """Keep the running sequences' ids consecutive, swapping caches when they are not: llama.cpp
        decodes a run of consecutive ids in one pass (see `_pack`), so busy slots 0 and 2 would cost
        two passes over the weights per step. A swap copies the caches of both slots, which costs
        about what a few decode steps do; a sequence near its end is not worth it."""
        busy = {a.slot.seq_id for a in self.active}
        if len(busy) < 2 or max(busy) - min(busy) + 1 == len(busy):
            return
        table = self.slots.slots

        def cost(window: range) -> int:  # cells copied: the movers' and those of the slots they take
            outside = [len(table[i].tokens) for i in busy if i not in window]
            inside = sorted(len(table[i].tokens) for i in window if i not in busy)
            return sum(outside) + sum(inside[: len(outside)])

        window = min((range(s, s + len(busy)) for s in range(len(table) - len(busy) + 1)), key=cost)
        movers = [a for a in self.active if a.slot.seq_id not in window]
        if any(a.remaining < MOVE_WORTH for a in movers):
            return
        # Emptier slots first: their caches cost least to move out of the way.
        places = sorted((i for i in window if i not in busy), key=lambda i: len(table[i].tokens))
        for active, place in zip(movers, places, strict=True):
            log.debug("swapping slots %d and %d: running sequences side by side", active.slot.seq_id, place)
            try:
                self.ctx.swap(active.slot.seq_id, place)
            except StepFailed as exc:  # both caches are gone: their sessions start over
                log.exception("swapping slots failed")
                for slot in (active.slot, table[place]):
                    self.ctx.forget(slot.seq_id)
                    slot.tokens.clear()
                self._finish(active, "error", f"{type(exc).__name__}: {exc}")
                continue
            self.slots.exchange(active.slot, table[place])
            self.swaps += 1

    def _pack(self) -> tuple[list[tuple[Active, int]], int, int, list[FollowUp]]:
        """Fill the batch; returns (sequences that get logits, with their batch index), decode and
        prefill token counts, and the follow-ups packed.

        Decode tokens go in ascending sequence id. With one KV stream per sequence llama.cpp splits a
        batch into micro-batches that take "only increasing sequence ids" (llama-batch.cpp,
        split_equal): in the order requests arrived, one pass over the weights per step would become
        one pass per sequence, and batching would buy nothing."""
        batch = self.batch
        batch.clear()
        outputs: list[tuple[Active, int]] = []
        by_sequence = sorted(self.active, key=lambda a: a.slot.seq_id)
        decoding = [a for a in by_sequence if a.next_token is not None]
        for active in decoding:
            slot = active.slot
            outputs.append((active, batch.add(active.next_token, len(slot.tokens), slot.seq_id, True)))
            slot.tokens.append(active.next_token)
            active.next_token = None
        budget = batch.capacity - len(decoding)
        n_prefill = 0
        for active in [a for a in self.active if a.prefilling]:  # prompts in the order they came
            if budget <= 0:
                break
            prompt, slot = active.prompt, active.slot
            chunk = prompt[active.cursor : active.cursor + budget]
            for offset, token in enumerate(chunk):
                last = active.cursor + offset == len(prompt) - 1
                index = batch.add(token, active.cursor + offset, slot.seq_id, last)
                if last:
                    outputs.append((active, index))
            slot.tokens.extend(chunk)
            active.cursor += len(chunk)
            budget -= len(chunk)
            n_prefill += len(chunk)
        packed: list[FollowUp] = []
        for follow_up in self._due_follow_ups():
            slot, tokens = follow_up.slot, follow_up.tokens
            if len(tokens) > budget:
                continue  # next step
            self.follow_ups.remove(follow_up)
            if len(slot.tokens) + len(tokens) >= self.ctx.n_ctx_seq:
                continue  # no room left in this session's context
            for offset, token in enumerate(tokens):
                batch.add(token, len(slot.tokens) + offset, slot.seq_id, False)
            slot.tokens.extend(tokens)
            self.cache.idle(slot)  # filed again under its longer tokens
            packed.append(follow_up)
            budget -= len(tokens)
            n_prefill += len(tokens)
        return outputs, len(decoding), n_prefill, packed

    def _due_follow_ups(self) -> list[FollowUp]:
        now = time.perf_counter()
        return [f for f in self.follow_ups if f.due <= now and f.slot.state is SlotState.IDLE]

    def _sample(self, active: Active, index: int) -> None:
        now = time.perf_counter()
        if active.prefilled is None:
            active.prefilled = now
            active.slot.state = SlotState.DECODE
            self.cache.checkpoint(active.slot)
        token = active.sampler.sample(self.ctx, index)
        active.first = active.first or now
        if self.model.is_eog(token):
            self._finish(active, "stop", pending=[])
            return
        active.n_gen += 1
        active.request.stream.tokens.append(token)
        active.request.stream.push(active.text.feed(self.model.token_bytes(token)))
        if active.text.stopped:
            self._finish(active, "stop")
        elif active.n_gen >= active.request.sampling.max_new_tokens:
            self._finish(active, "length", pending=[token])  # sampled, streamed, not yet in the cache
        elif len(active.slot.tokens) + 1 >= self.ctx.n_ctx_seq:
            self._finish(active, "length")  # the sequence's context is full
        else:
            active.next_token = token

    def _finish(
        self, active: Active, finish: str, error: str | None = None, pending: list[int] | None = None
    ) -> None:
        """`pending`: the reply ended where its next turn's prompt carries on (its end-of-turn token, or
        its length with the last token not yet in the cache), so a follow-up may be queued."""
        stream = active.request.stream
        stream.push(active.text.flush())
        completion = active.completion(finish, error)
        active.sampler.close()
        self.active.remove(active)
        self.slots.release(active.slot)
        self.cache.idle(active.slot)
        request = active.request
        if pending is not None and request.followed_by and request.session is not None:
            due = time.perf_counter() + FOLLOW_UP_DELAY
            self.follow_ups.append(FollowUp(active.slot, [*pending, *request.followed_by], due))
        log.info(
            "model=%s session=%s slot=%d prompt=%d cached=%d (%s) completion=%d finish=%s ttft=%.3fs "
            "prefill=%.0f tok/s decode=%.1f tok/s",
            self.name,
            active.request.session,
            active.slot.seq_id,
            completion.usage.prompt_tokens,
            completion.usage.cached_tokens,
            completion.usage.cached_from or "none",
            completion.usage.completion_tokens,
            finish,
            completion.timings.time_to_first_token,
            completion.timings.prefill_tokens_per_s,
            completion.timings.decode_tokens_per_s,
        )
        stream.finish(completion)


def _ema(previous: float, sample: float) -> float:
    return sample if previous == 0.0 else (1 - EMA) * previous + EMA * sample


def _unserved(request: Request, finish: str, error: str | None = None) -> Completion:
    """The Completion of a request that never got a slot."""
    return Completion(
        text="",
        finish_reason=finish,  # type: ignore[arg-type]
        usage=Usage(len(request.tokens), 0, 0),
        timings=Timings(0.0, 0.0, 0.0),
        error=error,
    )
