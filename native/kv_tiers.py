"""The KV cache's two tiers below the slots: host memory (RAM) and files (disk).

A slot's state that is about to be overwritten goes to the RAM tier; a session's state goes to the
disk tier once the session has been idle a while and when the engine stops. Both are bounded (least
recently used out first) and both are found through the one prefix index (native/prefix_index.py).

A disk file is one JSON header line, then the state bytes as `llama_state_seq_get_data` wrote them.
The header names the model (a hash of its file), the llama.cpp build (a hash of its libraries) and
the context's parameters; it also holds the tokens, a hash of the owner and of the session, and a CRC
of the state. A file whose header does not match, or whose bytes do not check, is ignored with one
log line: the request computes its prompt as if nothing were cached. Files are the owner's alone
(0600 in a 0700 folder) and named by a hash, so no path ever comes from a session name or a user.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from native.hardware import total_memory
from native.llama import state_buffer

log = logging.getLogger("hearth.cache")

FORMAT = 1
SUFFIX = ".kv"


def _default_ram_mib() -> int:
    """An eighth of the machine's memory, at most 8 GiB (llama.cpp's server keeps 8 GiB)."""
    return min(8192, (total_memory() or 2**33) // 8 // 2**20)


class CacheConfig(BaseSettings):
    """The KV cache tiers' settings, from `HEARTH_*` variables (or arguments)."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    cache_ram: int = Field(
        default_factory=_default_ram_mib, ge=0, description="MiB of host memory for evicted caches; 0: off"
    )
    cache_disk: int = Field(4096, ge=0, description="MiB of disk for sessions' caches; 0: off")
    cache_idle_s: float = Field(
        5.0, ge=0, description="Seconds a session is idle before its cache is written to disk"
    )
    slot_similarity: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of a slot's cached tokens (and of the request) a common prefix must reach "
        "before a request takes that slot over (llama.cpp's --slot-prompt-similarity)",
    )
    data_dir: Path | None = Field(None, description="Hearth's data folder; caches go to its kv/")

    def cache_dir(self) -> Path:
        base = self.data_dir or Path(platformdirs.user_data_dir("hearth", appauthor=False))
        return base / "kv"


def owner_key(user: str | None) -> str:
    """What a user is filed under: a hash, so neither index nor file holds the name itself."""
    return "" if user is None else hashlib.sha256(f"user\0{user}".encode()).hexdigest()[:32]


def session_key(owner: str, session: str) -> str:
    return hashlib.sha256(f"session\0{owner}\0{session}".encode()).hexdigest()[:32]


@dataclass(eq=False)
class Saved:
    """One sequence's KV state outside the slots: in RAM (`data`) or on disk (`path`)."""

    tokens: list[int]
    owner: str
    pos_min: int
    """The smallest position the state holds (a sliding-window cache drops older ones)."""
    size: int
    session: str | None = None
    """`session_key` of the session it belongs to, if any."""
    data: ctypes.Array | None = None
    """The state itself, in RAM: what `Context.save_state` gave."""
    path: Path | None = None
    last_used: float = field(default_factory=time.monotonic)

    @property
    def tier(self) -> str:
        return "ram" if self.data is not None else "disk"


@dataclass
class TierStats:
    hits: int = 0
    tokens_saved: int = 0
    """Prompt tokens served from this tier instead of computed."""
    entries: int = 0
    bytes: int = 0
    tokens: int = 0
    """Tokens whose state the entries hold (bytes / tokens: what a cached token weighs)."""
    stores: int = 0
    evictions: int = 0
    rejected: int = 0
    """Files ignored: another model, build or context, truncated, corrupt."""

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class RamTier:
    """Evicted states in host memory, at most `limit` bytes; the least recently used leave first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: list[Saved] = []
        self.stats = TierStats()

    def put(self, entry: Saved) -> list[Saved]:
        """Keep `entry`; returns the entries it pushed out (to take out of the index)."""
        if entry.size > self.limit:
            return [entry]
        self.entries.append(entry)
        self.stats.stores += 1
        return self._fit()

    def remove(self, entry: Saved) -> None:
        if entry in self.entries:
            self.entries.remove(entry)
        self._count()

    def _fit(self) -> list[Saved]:
        out = []
        self.entries.sort(key=lambda e: e.last_used)
        total = sum(e.size for e in self.entries)
        while self.entries and total > self.limit:
            out.append(self.entries.pop(0))
            total -= out[-1].size
            self.stats.evictions += 1
        self._count()
        return out

    def _count(self) -> None:
        self.stats.entries = len(self.entries)
        self.stats.bytes = sum(e.size for e in self.entries)
        self.stats.tokens = sum(len(e.tokens) for e in self.entries)


class DiskTier:
    """Sessions' states as files under `folder`, at most `limit` bytes of them.

    `identity` names what a state is only valid for (model, build, context parameters): a file made
    under another identity is ignored. Only the scheduler thread reads and writes entries; `forget`
    may run on any thread, so the folder's changes go under one lock."""

    def __init__(self, folder: Path, limit: int, identity: dict) -> None:
        self.folder = folder
        self.limit = limit
        self.identity = identity
        self.entries: dict[str, Saved] = {}  # file name -> entry
        self.stats = TierStats()
        self._lock = threading.Lock()

    # -- reading what is there ----------------------------------------------------------------------

    def scan(self) -> None:
        """Take in the files of this identity (each checked by its header only; the bytes are
        checked when a request restores them)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            header = self._header(path)
            if header is None:
                continue
            entry = Saved(
                tokens=header["tokens"],
                owner=header["owner"],
                pos_min=header["pos_min"],
                size=header["bytes"],
                session=header["session"],
                path=path,
            )
            entry.last_used = path.stat().st_mtime - time.time() + time.monotonic()
            self.entries[path.name] = entry
        self._count()

    def _header(self, path: Path) -> dict | None:
        try:
            with path.open("rb") as f:
                header = _read_header(f)
            for name, value in self.identity.items():
                if header.get(name) != value:
                    # Another model, build or context: kept for whoever it belongs to, not used here.
                    log.info("KV cache file %s is for another %s: not used here", path.name, name)
                    return None
            if path.stat().st_size != header["offset"] + header["bytes"]:
                raise ValueError("truncated")
            return header
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.stats.rejected += 1
            log.warning("KV cache file %s ignored: %s", path.name, exc)
            return None

    def read(self, entry: Saved) -> ctypes.Array | None:
        """The state of `entry`, read straight into the buffer llama.cpp takes, or None (with one log
        line) when the file no longer checks."""
        assert entry.path is not None
        try:
            with entry.path.open("rb") as f:
                header = _read_header(f)
                f.seek(header["offset"])
                data = state_buffer(header["bytes"])
                complete = f.readinto(data) == header["bytes"] and not f.read(1)
            if not complete or zlib.crc32(data) != header["crc32"]:
                raise ValueError("its bytes do not match their checksum (truncated or corrupt)")
            if header["tokens"] != entry.tokens or any(header.get(k) != v for k, v in self.identity.items()):
                raise ValueError("it changed since it was read")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.stats.rejected += 1
            log.warning("KV cache file %s ignored: %s", entry.path.name, exc)
            self.drop(entry)
            return None
        entry.last_used = time.monotonic()
        return data

    # -- writing ------------------------------------------------------------------------------------

    def write(
        self, tokens: list[int], owner: str, session: str, pos_min: int, data: memoryview
    ) -> tuple[Saved, list[Saved]]:
        """Write a session's state, replacing its previous file; returns its entry and the entries
        that left (the session's old one, and the least recently used ones over the limit)."""
        name = hashlib.sha256(f"{session}\0{self.identity['model']}".encode()).hexdigest()[:40] + SUFFIX
        header = {
            "format": FORMAT,
            **self.identity,
            "owner": owner,
            "session": session,
            "tokens": tokens,
            "pos_min": pos_min,
            "bytes": len(data),
            "crc32": zlib.crc32(data),
        }
        # The header holds the offset of the bytes it precedes: size it for the widest offset, pad.
        offset = len(json.dumps({**header, "offset": 10**12}, separators=(",", ":"))) + 1
        head = json.dumps({**header, "offset": offset}, separators=(",", ":")).encode()
        head = head.ljust(offset - 1) + b"\n"
        path = self.folder / name
        gone: list[Saved] = []
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                f.write(data)
            os.replace(tmp, path)  # a crash mid-write leaves the old file or none, never half of one
            if (old := self.entries.pop(name, None)) is not None:
                gone.append(old)
            entry = Saved(list(tokens), owner, pos_min, len(data), session=session, path=path)
            self.entries[name] = entry
            self.stats.stores += 1
            gone += self._fit(keep=entry)
            self._count()
        return entry, gone

    def _fit(self, keep: Saved) -> list[Saved]:
        out = []
        by_age = sorted(self.entries.values(), key=lambda e: e.last_used)
        total = sum(e.size for e in by_age)
        for entry in by_age:
            if total <= self.limit:
                break
            if entry is keep and total - entry.size > self.limit:
                continue
            total -= entry.size
            self._unlink(entry)
            out.append(entry)
            self.stats.evictions += 1
        return out

    def drop(self, entry: Saved) -> None:
        with self._lock:
            self._unlink(entry)
            self._count()

    def forget(self, session: str) -> list[Saved]:
        """Delete every file of `session` (its thread was deleted)."""
        with self._lock:
            gone = [e for e in self.entries.values() if e.session == session]
            for entry in gone:
                self._unlink(entry)
            self._count()
        return gone

    def _unlink(self, entry: Saved) -> None:
        if entry.path is not None:
            self.entries.pop(entry.path.name, None)
            entry.path.unlink(missing_ok=True)

    def _count(self) -> None:
        self.stats.entries = len(self.entries)
        self.stats.bytes = sum(e.size for e in self.entries.values())
        self.stats.tokens = sum(len(e.tokens) for e in self.entries.values())


def forget_session_files(folder: Path, session: str) -> int:
    """Delete the files of `session` under `folder`, for whichever model they were made: what a
    deleted chat thread does when its engine is not loaded. Returns how many were deleted."""
    deleted = 0
    for path in folder.glob(f"*{SUFFIX}") if folder.is_dir() else []:
        try:
            with path.open("rb") as f:
                header = _read_header(f)
            if header.get("session") == session:
                path.unlink(missing_ok=True)
                deleted += 1
        except (OSError, ValueError):
            continue
    return deleted


def _read_header(f) -> dict:
    """The JSON header line of a cache file open at its start; ValueError when it is none."""
    header = json.loads(f.readline(1 << 24))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a Hearth KV cache file of this format")
    return header


def file_digest(path: Path, *, whole_up_to: int = 2**30) -> str:
    """A hash of a file: all of it up to `whole_up_to` bytes, else its size, head and tail (a model
    of many GiB would take seconds to hash whole)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= whole_up_to:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        else:
            h.update(str(size).encode())
            h.update(f.read(1 << 26))
            f.seek(size - (1 << 26))
            h.update(f.read(1 << 26))
    return h.hexdigest()[:32]
