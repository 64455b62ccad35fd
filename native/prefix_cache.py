"""Where a request's cached prefix comes from: its slot, another idle slot, the RAM tier or the disk
tier, all found through one prefix index. Runs on the scheduler thread, which owns the context.

The rules (the RAM tier after llama.cpp's server `--cache-ram`, the disk tier Hearth's own):
- A slot's state that a request is about to overwrite or cut by many tokens is first copied to RAM.
- A request whose tokens share more with a saved state (or another idle slot) than with the slot it
  got has that state copied into its slot, and prefills only the rest.
- A session's state is written to disk once the session has been idle `cache_idle_s`, and every
  session's when the engine stops; a process started later finds it by its tokens.
- A sliding-window cache (Gemma 3) keeps only the window: a saved state serves a prompt only where it
  still holds what that prompt's next tokens attend to (`pos_min`), like the slots' own check.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from native.errors import StepFailed
from native.hardware import build_digest
from native.kv_tiers import (
    CacheConfig,
    DiskTier,
    RamTier,
    Saved,
    TierStats,
    file_digest,
    owner_key,
    session_key,
)
from native.llama import Context
from native.prefix_index import PrefixIndex
from native.slots import Slot, SlotState, common_prefix, window_kept

log = logging.getLogger("hearth.cache")

MIN_SAVE = 32  # tokens a cut must throw away before the state is worth a copy in RAM
MIN_RESTORE = 4  # tokens a saved state must add over the slot's own before it is copied in
TIER_PREFERENCE = {"slot": 0.3, "ram": 0.2, "disk": 0.1}  # equal prefixes: the cheapest copy wins


class PrefixCache:
    def __init__(
        self, ctx: Context, n_swa: int, config: CacheConfig, model_path: Path | None = None, context: str = ""
    ) -> None:
        """`model_path` and `context` (the context's parameters) name what a disk file is valid for;
        without a model path there is no disk tier."""
        self.ctx = ctx
        self.n_swa = n_swa
        self.config = config
        self.index = PrefixIndex()
        self.ram = RamTier(config.cache_ram * 2**20)
        self.disk: DiskTier | None = None
        self.slot_stats = TierStats()
        # The thread that hashes the model and reads the disk tier's headers, off the scheduler thread.
        self._identity: threading.Thread | None = None
        if config.cache_disk and model_path is not None:
            self._identity = identity_thread(self, model_path, context)
            self._identity.start()
        self._disk_ready: DiskTier | None = None
        self._disk_due: dict[str, float] = {}  # session key -> when its state is written
        self._on_disk: dict[str, tuple[int, ...]] = {}  # session key -> the tokens its file holds

    # -- the disk tier, once the model's identity is known ------------------------------------------

    def offer_disk(self, disk: DiskTier) -> None:
        """Called by the identity thread: the disk tier, its files scanned."""
        self._disk_ready = disk

    def _ensure_disk(self, wait: bool) -> None:
        if self.disk is not None or self._identity is None:
            return
        if wait:
            self._identity.join()
        if self._disk_ready is None:
            if not self._identity.is_alive():
                self._identity = None  # it failed (and said why)
            return
        self.disk = self._disk_ready
        for entry in self.disk.entries.values():
            self.index.add(entry, entry.tokens, entry.owner)
            if entry.session:
                self._on_disk[entry.session] = tuple(entry.tokens)
        log.info("KV cache disk tier: %d files in %s", len(self.disk.entries), self.disk.folder)

    # -- slots coming and going ---------------------------------------------------------------------

    def idle(self, slot: Slot) -> None:
        """`slot` finished a request (or a follow-up grew it): it may serve others' prefixes, and its
        session's state goes to disk once idle long enough."""
        if slot.tokens:
            self.index.add(slot, slot.tokens, slot.owner)
        if slot.session is not None and self.config.cache_disk and self._identity is not None:
            self._disk_due[session_key(slot.owner, slot.session)] = (
                time.monotonic() + self.config.cache_idle_s
            )

    def busy(self, slot: Slot) -> None:
        self.index.discard(slot)

    # -- a request's prefix -------------------------------------------------------------------------

    def prepare(self, slot: Slot, tokens: list[int], owner: str) -> tuple[int, str | None]:
        """Fill `slot` with the best cached prefix of `tokens` for `owner` (`kv_tiers.owner_key`);
        returns how many tokens of the slot may be kept and where they came from ("slot", "ram",
        "disk" or None). The caller then cuts the slot's cache to that length (and checks the
        sliding window)."""
        self._ensure_disk(wait=True)
        own = common_prefix(slot.tokens, tokens) if slot.owner == owner else 0
        if 0 < own < len(slot.tokens) and not self._cuttable(self.ctx.pos_min(slot.seq_id), own):
            own = 0  # a sliding window has passed the cut: that cache is no prefix of this prompt
        holder, shared = self.index.best(tokens, owner, lambda h, n: self._worth(h, n, slot))
        if holder is not None and shared >= own + MIN_RESTORE:
            self._stash(slot, keep=0)
            if self._restore(holder, slot):
                slot.owner = owner
                if isinstance(holder, Saved) and holder.data is not None and shared == len(holder.tokens):
                    self._drop(holder)  # moved: the slot holds it now, and goes back to RAM when evicted
                return shared, holder.tier if isinstance(holder, Saved) else "slot"
            own = 0
        elif slot.owner != owner:
            self._stash(slot, keep=0)
        else:
            self._stash(slot, keep=own)
        slot.owner = owner
        return own, "slot" if own else None

    def count_hit(self, source: str | None, reused: int) -> None:
        if source is None or reused <= 0:
            return
        stats = (
            self.slot_stats if source == "slot" else self.ram.stats if source == "ram" else self.disk.stats
        )
        stats.hits += 1
        stats.tokens_saved += reused

    def _worth(self, holder: Slot | Saved, shared: int, target: Slot) -> float | None:
        """A holder's score for a request sharing `shared` tokens with it; None when it cannot serve
        or its copy would cost more than it saves (a copy costs what the whole state weighs)."""
        if shared < max(MIN_RESTORE, self.config.slot_similarity * len(holder.tokens)):
            return None
        if isinstance(holder, Slot):
            if holder is target or holder.state is not SlotState.IDLE:
                return None
            tier, pos_min, length = "slot", self.ctx.pos_min(holder.seq_id), len(holder.tokens)
        else:
            tier, pos_min, length = holder.tier, holder.pos_min, len(holder.tokens)
        if shared < length and not self._cuttable(pos_min, shared):
            return None
        return shared + TIER_PREFERENCE[tier]

    def _cuttable(self, pos_min: int, position: int) -> bool:
        # The scheduler checks the window at `position - 1`: the prompt's last token may be replayed.
        return window_kept(pos_min, position - 1, self.n_swa)

    # -- copies between the slots and the tiers -----------------------------------------------------

    def checkpoint(self, slot: Slot) -> None:
        """A sliding-window cache (Gemma 3) cannot be cut back past its window: once a reply runs
        longer than the window, a regenerated reply or an edited last message would compute the
        whole prompt again. So when a prompt longer than the window has been read, its state is kept
        in RAM (llama.cpp's server keeps such checkpoints too), and such a request restores it."""
        if self.n_swa and len(slot.tokens) > self.n_swa:
            self._stash(slot, keep=0)

    def _stash(self, slot: Slot, keep: int) -> None:
        """Copy the slot's state to RAM when a request is about to keep only `keep` of its tokens
        and the rest is worth keeping."""
        if not self.ram.limit or len(slot.tokens) - keep < MIN_SAVE:
            return
        owner, tokens = slot.owner, slot.tokens
        same, _ = self.index.best(
            tokens,
            owner,
            lambda h, n: 1.0 if isinstance(h, Saved) and n == len(h.tokens) == len(tokens) else None,
        )
        if same is not None:  # already saved as it is (restored, then not extended)
            same.last_used = time.monotonic()
            return
        try:
            data = self.ctx.save_state(slot.seq_id)
        except StepFailed:
            log.exception("saving slot %d to RAM failed", slot.seq_id)
            return
        if data is None:
            return
        session = session_key(owner, slot.session) if slot.session is not None else None
        entry = Saved(
            list(tokens), owner, self.ctx.pos_min(slot.seq_id), len(data), session=session, data=data
        )
        for gone in self.ram.put(entry):
            self.index.discard(gone)
        if entry in self.ram.entries:
            self.index.add(entry, entry.tokens, owner)
            log.debug("slot %d: %d tokens (%d bytes) kept in RAM", slot.seq_id, len(tokens), len(data))

    def _restore(self, holder: object, slot: Slot) -> bool:
        """Copy `holder`'s state into `slot` (whose cache is dropped first)."""
        self.ctx.forget(slot.seq_id)
        slot.tokens.clear()
        if isinstance(holder, Slot):
            tokens = holder.tokens
            try:
                data = self.ctx.save_state(holder.seq_id)
            except StepFailed:
                log.exception("copying slot %d failed", holder.seq_id)
                return False
        else:
            assert isinstance(holder, Saved)
            data, tokens = holder.data, holder.tokens
            if data is None:
                assert self.disk is not None
                data = self.disk.read(holder)
                if data is None:
                    self.index.discard(holder)
                    return False
            holder.last_used = time.monotonic()
        if data is None or not self.ctx.restore_state(data, slot.seq_id):
            log.warning("a cached state of %d tokens could not be restored: computing it", len(tokens))
            self.ctx.forget(slot.seq_id)
            if isinstance(holder, Saved):
                self._drop(holder)
            return False
        slot.tokens.extend(tokens)
        return True

    def _drop(self, entry: Saved) -> None:
        self.index.discard(entry)
        if entry.data is not None:
            self.ram.remove(entry)
        elif self.disk is not None:
            self.disk.drop(entry)

    # -- the disk tier's writes ---------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When (time.monotonic) the next session's state falls due for the disk."""
        return min(self._disk_due.values(), default=None)

    def write_due(self, slots: list[Slot], *, everything: bool = False) -> None:
        """Write the sessions whose idle time has run out (all of them when the engine stops)."""
        if not self._disk_due:
            return
        self._ensure_disk(wait=everything)
        if self.disk is None:
            if self._identity is None:
                self._disk_due.clear()
            return
        now = time.monotonic()
        for key, due in list(self._disk_due.items()):
            if due > now and not everything:
                continue
            slot = next(
                (s for s in slots if s.session is not None and session_key(s.owner, s.session) == key), None
            )
            if slot is not None and slot.state is not SlotState.IDLE:
                continue  # it is running again: written after this request
            del self._disk_due[key]
            self._write(key, slot)

    def _write(self, key: str, slot: Slot | None) -> None:
        assert self.disk is not None
        if slot is not None:
            tokens, owner, pos_min = slot.tokens, slot.owner, self.ctx.pos_min(slot.seq_id)
            try:
                data = self.ctx.save_state(slot.seq_id) if tuple(tokens) != self._on_disk.get(key) else None
            except StepFailed:
                log.exception("saving slot %d for the disk failed", slot.seq_id)
                return
        else:  # evicted to RAM meanwhile: its newest copy there
            saved = [e for e in self.ram.entries if e.session == key]
            if not saved:
                return
            entry = max(saved, key=lambda e: e.last_used)
            tokens, owner, pos_min, data = entry.tokens, entry.owner, entry.pos_min, entry.data
            if tuple(tokens) == self._on_disk.get(key):
                data = None
        if data is None or not tokens:
            return
        try:
            written, gone = self.disk.write(list(tokens), owner, key, pos_min, memoryview(data).cast("B"))
        except OSError as exc:
            log.warning("writing a session's KV cache to disk failed: %s", exc)
            return
        for entry in gone:
            self.index.discard(entry)
            if entry.session != key:
                self._on_disk.pop(entry.session, None)
        self._on_disk[key] = tuple(tokens)
        self.index.add(written, written.tokens, owner)
        log.debug("session %s: %d tokens (%d bytes) written to disk", key[:8], len(tokens), len(data))

    # -- forgetting ---------------------------------------------------------------------------------

    def forget_session(self, session: str, user: str | None, slots: list[Slot]) -> None:
        """A session (a chat thread) was deleted: its cache goes from every tier."""
        owner = owner_key(user)
        key = session_key(owner, session)
        self._disk_due.pop(key, None)
        self._on_disk.pop(key, None)
        for slot in slots:
            if slot.session == session and slot.owner == owner and slot.state is SlotState.IDLE:
                self.index.discard(slot)
                self.ctx.forget(slot.seq_id)
                slot.tokens.clear()
        for entry in [e for e in self.ram.entries if e.session == key]:
            self._drop(entry)
        self._ensure_disk(wait=True)
        if self.disk is not None:
            for entry in self.disk.forget(key):
                self.index.discard(entry)

    def stats(self) -> dict:
        disk = self.disk.stats.as_dict() if self.disk is not None else TierStats().as_dict()
        return {
            "slots": {"hits": self.slot_stats.hits, "tokens_saved": self.slot_stats.tokens_saved},
            "ram": {**self.ram.stats.as_dict(), "limit_bytes": self.ram.limit},
            "disk": {**disk, "limit_bytes": self.config.cache_disk * 2**20},
            "index_entries": len(self.index),
        }


def identity_thread(cache: PrefixCache, model_path: Path, context: str) -> threading.Thread:
    """Hash the model file and the llama.cpp build, then read the disk tier's headers, off the
    scheduler thread (a model of a few hundred MiB takes a fraction of a second to hash)."""

    def run() -> None:
        try:
            identity = {"model": file_digest(model_path), "build": build_digest(), "context": context}
            config = cache.config
            disk = DiskTier(config.cache_dir(), config.cache_disk * 2**20, identity)
            disk.scan()
            cache.offer_disk(disk)
        except Exception:
            log.exception("the KV cache's disk tier is off: its folder or the model could not be read")

    return threading.Thread(target=run, name="hearth-cache-identity", daemon=True)
