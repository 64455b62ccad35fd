"""One prefix index over every cached state: a radix tree over token ids, one tree per owner.

Each holder (an idle slot, a RAM entry, a disk entry) is filed under the tokens its KV state covers.
A request asks for the holder sharing the longest prefix with its tokens, wherever it lives, the way
SGLang's RadixAttention finds a cached prefix: one walk down the tree, then the subtrees along the
path from the deepest point up. A system prompt under a hundred conversations is one path.
Separate trees per owner mean one user's cache is never even looked at for another user's request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


class _Node:
    __slots__ = ("edge", "children", "holders", "depth")

    def __init__(self, edge: tuple[int, ...], depth: int) -> None:
        self.edge = edge  # the tokens from the parent to here
        self.depth = depth  # tokens from the root to the end of `edge`
        self.children: dict[int, _Node] = {}
        self.holders: list[Any] = []  # holders whose tokens end exactly here

    def walk(self) -> Iterator[Any]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield from node.holders
            stack.extend(node.children.values())


class PrefixIndex:
    """Holders filed by token prefix. `usable(holder, lcp)` decides at lookup time which holders may
    serve (a busy slot may not; a sliding-window state cut too far back may not) and how much a
    holder is worth: it returns a score, or None to skip the holder."""

    def __init__(self) -> None:
        self._roots: dict[str, _Node] = {}
        self._keys: dict[int, tuple[str, tuple[int, ...]]] = {}  # id(holder) -> where it is filed

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, holder: object) -> bool:
        return id(holder) in self._keys

    def add(self, holder: Any, tokens: Sequence[int], owner: str) -> None:
        """File `holder` under `tokens` (copied: a slot's list changes later) for `owner`."""
        self.discard(holder)
        key = tuple(tokens)
        node = self._roots.setdefault(owner, _Node((), 0))
        i = 0
        while i < len(key):
            child = node.children.get(key[i])
            if child is None:
                child = node.children[key[i]] = _Node(key[i:], len(key))
                node = child
                i = len(key)
                break
            n = _shared(child.edge, key, i)
            if n < len(child.edge):  # split the edge where the new key leaves it
                middle = _Node(child.edge[:n], node.depth + n)
                child.edge = child.edge[n:]
                middle.children[child.edge[0]] = child
                node.children[key[i]] = middle
                child = middle
            node = child
            i += n
        node.holders.append(holder)
        self._keys[id(holder)] = (owner, key)

    def discard(self, holder: Any) -> None:
        filed = self._keys.pop(id(holder), None)
        if filed is None:
            return
        owner, key = filed
        path = [self._roots[owner]]
        i = 0
        while i < len(key):
            node = path[-1].children[key[i]]
            path.append(node)
            i += len(node.edge)
        path[-1].holders = [h for h in path[-1].holders if h is not holder]
        # Prune the branches left empty (merging single children back is not worth the code).
        for parent, node in zip(reversed(path[:-1]), reversed(path[1:]), strict=True):
            if node.holders or node.children:
                break
            del parent.children[node.edge[0]]

    def best(
        self, tokens: Sequence[int], owner: str, usable: Callable[[Any, int], float | None]
    ) -> tuple[Any, int]:
        """The holder with the highest `usable` score and the tokens it shares with `tokens`, or
        (None, 0). Holders deeper along `tokens` share more, so the search stops as soon as no
        shallower holder can share as much as the best one found."""
        root = self._roots.get(owner)
        if root is None:
            return None, 0
        path: list[tuple[_Node, int]] = []  # each node reached and the tokens shared within it
        node, i = root, 0
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                break
            n = _shared(child.edge, tokens, i)
            path.append((child, i + n))
            if n < len(child.edge):
                break
            node, i = child, i + n
        best: tuple[Any, int] = (None, 0)
        best_score: float | None = None
        seen: _Node | None = None
        for node, shared in reversed(path):
            if best[0] is not None and best[1] >= shared:
                break
            for holder in _walk_except(node, seen):
                score = usable(holder, shared)
                if score is not None and (best_score is None or score > best_score):
                    best, best_score = (holder, shared), score
            seen = node
        return best

    def holders(self) -> Iterator[Any]:
        for root in self._roots.values():
            yield from root.walk()


def _shared(edge: tuple[int, ...], tokens: Sequence[int], start: int) -> int:
    n = min(len(edge), len(tokens) - start)
    for k in range(n):
        if edge[k] != tokens[start + k]:
            return k
    return n


def _walk_except(node: _Node, skip: _Node | None) -> Iterator[Any]:
    """The holders under `node`, leaving out the subtree `skip` (already searched, deeper)."""
    yield from node.holders
    for child in node.children.values():
        if child is not skip:
            yield from child.walk()
