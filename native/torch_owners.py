"""transformers' block sharing, kept within one user: Hearth's rule for every cache (native/kv_tiers.py).

transformers finds a request's cached prefix by a chain of block hashes whose first link hashes the
first page of tokens alone, so any two requests that start alike share pages, whoever sent them: one
user's prompt would come back faster for another who guesses it. Here the chain starts from the
owner's key instead. Two users' pages then never match; one user's requests (any session, or none)
match as before. Requests with no user form one pool of their own, as in the llama.cpp engine.

A request's id carries its owner's salt (`request_id_for`), so whatever transformers does with the
request, and however late, the salt is at hand. transformers is pinned (requirements-torch.txt): its
hash function is replaced in its module, once, and the two methods that start a chain are wrapped on
the engine's own cache, which tells the hash whose request it is working on.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable

from native.kv_tiers import owner_key

_working_for = threading.local()  # the owner's salt while transformers matches or hashes a request
_installed = False


def request_id_for(number: int, user: str | None) -> str:
    """The id of the engine's `number`th request, with the first link of its user's chains."""
    if user is None:
        return f"hearth-{number}"  # transformers' own start: the pool of requests of no user
    salt = hashlib.blake2b(owner_key(user).encode(), digest_size=8).hexdigest()
    return f"hearth-{number}-{salt}"


def _salt_of(request_id: str) -> int | None:
    _hearth, _number, *salt = request_id.split("-")
    return int(salt[0], 16) if salt else None


def _install() -> None:
    global _installed
    if _installed:
        return
    from transformers.generation.continuous_batching.cache_allocators import cache_allocator

    plain = cache_allocator.compute_block_hash

    def block_hash(parent_hash: int | None, tokens: list[int]) -> int:
        if parent_hash is None:
            parent_hash = getattr(_working_for, "salt", None)
        return plain(parent_hash, tokens)

    cache_allocator.compute_block_hash = block_hash
    _installed = True


def _as_owner(method: Callable, request_id: str, *args):
    _working_for.salt = _salt_of(request_id)
    try:
        return method(request_id, *args)
    finally:
        _working_for.salt = None


def keep_blocks_per_owner(cache) -> None:
    """Make `cache` (a PagedAttentionCache) share blocks only between requests of one owner, whose
    ids come from `request_id_for`."""
    _install()
    cache.search_prefix_match = functools.partial(_as_owner, cache.search_prefix_match)
    for allocator in cache.cache_allocators.values():
        allocator.mark_complete_blocks = functools.partial(_as_owner, allocator.mark_complete_blocks)
