"""Slots: the llama.cpp sequences of one context, each holding one conversation's KV cache.

A slot's life (after llama.cpp's server, tools/server `slot_state`):

    IDLE --assigned a request--> PREFILL --prompt computed--> DECODE --finished/cancelled--> IDLE

An IDLE slot keeps its cache: the next request of the same session (or any stateless request that
shares a prefix with it) computes only the tokens after the common prefix.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("hearth.slots")


class SlotState(enum.Enum):
    IDLE = "idle"
    PREFILL = "prefill"
    DECODE = "decode"


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    """Tokens whose keys and values are in this sequence's cache, in position order."""
    session: str | None = None
    """The session that owns this slot, if any."""
    owner: str = ""
    """Whose tokens these are (`kv_tiers.owner_key` of the request's user): no other user's request
    reuses them."""
    last_used: float = 0.0
    state: SlotState = SlotState.IDLE


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def window_kept(pos_min: int, position: int, n_swa: int) -> bool:
    """Whether a cache whose oldest position is `pos_min` still holds the window a token at
    `position` attends to: positions after `position - n_swa` (llama.cpp's `is_masked_swa`; 0: no
    sliding window). llama.cpp's server asks for one position more, which a restored state (it holds
    exactly its last token's window) never has: that token could not be computed again."""
    return n_swa == 0 or pos_min <= max(0, position - n_swa + 1)


def _fresh_slot_order(slot: Slot, busy: set[int]) -> tuple:
    """Empty slots first, beside the running ones if possible; then the least recently used."""
    if slot.tokens:
        return (1, slot.last_used)
    return (0, bool(busy) and slot.seq_id - 1 not in busy and slot.seq_id + 1 not in busy, slot.seq_id)


# A request "extends" a slot's cache when it keeps all of it but this many tokens (a reply's last
# tokens may tokenize otherwise inside the next prompt).
EXTENDS = 8


class SlotTable:
    """Chooses a slot for each request, destroying no cache while there is another way:
    1. the session's own slot;
    2. an idle slot whose cache the request extends (it cuts nothing of it);
    3. an empty slot (the prefix cache may still copy a shared prefix into it, a system prompt);
    4. the idle slot with the longest common prefix, when that is a real share (`similarity`) of its
       cached tokens and of the request, like llama.cpp's --slot-prompt-similarity;
    5. the least recently used idle slot.
    What 4 and 5 overwrite goes to the RAM tier first (native/prefix_cache.py)."""

    def __init__(self, n_slots: int, similarity: float = 0.1) -> None:
        self.slots = [Slot(i) for i in range(n_slots)]
        self.similarity = similarity
        self._by_session: dict[tuple[str, str], Slot] = {}

    def of_session(self, session: str, owner: str = "") -> Slot | None:
        """The slot `session` (of `owner`) holds, if it holds one."""
        return self._by_session.get((owner, session))

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.state is SlotState.IDLE]

    def choose(
        self, tokens: list[int], session: str | None, busy: set[int] = frozenset(), owner: str = ""
    ) -> Slot | None:
        """The slot this request should run in, or None if it must wait (no idle slot, or its
        session's slot is still busy with an earlier request). `busy`: the sequence ids running now;
        an empty slot next to them is taken first (llama.cpp decodes consecutive ids in one pass)."""
        if session is not None and (own := self._by_session.get((owner, session))) is not None:
            return own if own.state is SlotState.IDLE else None
        idle = self.idle()
        if not idle:
            return None
        # Only unowned slots are shared by prefix: taking another session's slot would cut its history.
        shared = [s for s in idle if s.session is None and s.owner == owner and s.tokens]
        best = max(shared, key=lambda s: common_prefix(s.tokens, tokens), default=None)
        lcp = common_prefix(best.tokens, tokens) if best is not None else 0
        empty = [s for s in idle if not s.tokens]
        if best is not None and lcp >= max(EXTENDS, len(best.tokens) - EXTENDS):
            rule, slot = f"extends its cache ({lcp} of {len(best.tokens)} tokens)", best
        elif empty:
            slot, rule = min(empty, key=lambda s: _fresh_slot_order(s, busy)), "empty slot"
        elif best is not None and lcp and lcp >= self.similarity * max(len(best.tokens), len(tokens)):
            rule, slot = f"longest common prefix ({lcp} of {len(best.tokens)} cached tokens)", best
        else:
            slot = min(idle, key=lambda s: _fresh_slot_order(s, busy))
            rule = f"least recently used (evicts {len(slot.tokens)} tokens)"
        log.info("slot %d for session %s: %s", slot.seq_id, session, rule)
        self._claim(slot, session, owner)
        return slot

    def _claim(self, slot: Slot, session: str | None, owner: str) -> None:
        if slot.session is not None and (slot.owner, slot.session) != (owner, session):
            del self._by_session[(slot.owner, slot.session)]  # evicted: its state goes to the RAM tier
        slot.session = session
        if session is not None:
            self._by_session[(owner, session)] = slot

    def exchange(self, a: Slot, b: Slot) -> None:
        """Swap the sequence ids of two slots, after their caches were swapped in llama.cpp: each slot
        keeps its session, tokens and state."""
        a.seq_id, b.seq_id = b.seq_id, a.seq_id
        self.slots[a.seq_id], self.slots[b.seq_id] = a, b

    def release(self, slot: Slot) -> None:
        slot.state = SlotState.IDLE
        slot.last_used = time.monotonic()
