"""A local, size-bounded, LRU cache of verified shards, shared safely by processes on one machine.

Layout under the cache root (configurable; see ``CLINICAL_PIPELINES_CACHE_DIR``)::

    shards/<sha256>.tar     verified shard bytes, content-addressed; mtime = last use (LRU, TTL)
    locks/<sha256>.lock     flock()ed while a process fetches that shard
    tmp/<sha256>.<rand>.part  a fetch in progress (only while its shard lock is held)
    cache.lock              flock()ed while evicting

Every lock is an ``fcntl.flock`` on an open file: the kernel releases it when its holder exits, even
on ``kill -9``, so no lock is ever stale; a lock file's mere existence means nothing. A shard in use
by a reader is held with a shared flock and is never evicted; eviction takes an exclusive one.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_pipelines.storage.base import ObjectStore
from clinical_pipelines.training.index import ShardEntry

CHUNK = 8 * 1024 * 1024


class ShardCorrupt(OSError):
    """A shard's bytes did not match the index's sha256 even after one re-fetch."""


@dataclass(frozen=True)
class Fetch:
    """The outcome of :meth:`ShardCache.ensure`: where the shard is, and whether it had to be fetched."""

    path: Path
    fetched: bool
    bytes_fetched: int
    attempts: int


class OpenShard:
    """A cached shard open for reading, held with a shared flock (so it is not evicted) until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (one ``pread``)."""
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise OSError(f"cached shard {self.path.name} is shorter than its index says")
        return data

    def read_into(self, buffers: list[Any], offset: int, length: int) -> None:
        """Fill ``buffers`` (``length`` bytes together) from ``offset``: one ``preadv`` straight into the caller's
        memory, a single copy."""
        if os.preadv(self.fd, buffers, offset) != length:
            raise OSError(f"cached shard {self.path.name} is shorter than its index says")

    def release(self) -> None:
        """Close the file, which drops the shared lock."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@contextmanager
def _flocked(path: Path, mode: int) -> Iterator[int]:
    for tries in range(10):  # the folder may be deleted under us (even while we recreate it): go again
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            break
        except (FileNotFoundError, FileExistsError):
            if tries == 9:
                raise
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


def _try_exclusive(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when someone holds it (or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class ShardCache:
    """Verified shards on local disk, bounded to ``max_bytes`` by LRU eviction, wiped after ``ttl_seconds`` idle.

    Safe to share between the processes of one machine (data-loader workers, ranks). With no
    ``max_bytes`` the cache is unbounded; with no ``ttl_seconds`` shards stay until evicted.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int | None = None, ttl_seconds: float | None = None):
        self.root = Path(root).absolute()
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._last_expire = 0.0
        self.evictions = 0
        self.expire()

    @classmethod
    def bounded(cls, root: str | os.PathLike[str], *, max_gb: float, ttl_hours: float) -> ShardCache:
        """A cache bounded as the settings say it: ``max_gb`` (GB) and ``ttl_hours``, 0 meaning no bound."""
        return cls(root, max_bytes=int(max_gb * 1e9) if max_gb > 0 else None,
                   ttl_seconds=ttl_hours * 3600 if ttl_hours > 0 else None)  # fmt: skip

    # -- layout ----------------------------------------------------------------------------------
    def shard_path(self, sha256: str) -> Path:
        """Where the shard with this sha256 lives once cached."""
        return self.root / "shards" / f"{sha256}.tar"

    def _lock_path(self, sha256: str) -> Path:
        return self.root / "locks" / f"{sha256}.lock"

    def cached_bytes(self) -> int:
        """Bytes of shards currently in the cache."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[Path, int, float]]:
        try:
            with os.scandir(self.root / "shards") as it:
                out = []
                for entry in it:
                    if entry.name.endswith(".tar"):
                        try:
                            st = entry.stat()
                        except FileNotFoundError:
                            continue
                        out.append((Path(entry.path), st.st_size, st.st_mtime))
                return out
        except FileNotFoundError:
            return []

    # -- fetch -----------------------------------------------------------------------------------
    def ensure(self, store: ObjectStore, shard: ShardEntry) -> Fetch:
        """Make ``shard`` present and verified in the cache; fetch it from ``store`` if needed.

        Promises: a fetched shard is streamed to a temp file while hashed and only renamed into
        place when its sha256 matches the index; a mismatch is re-fetched once, then raises
        :class:`ShardCorrupt` naming the shard. Concurrent callers fetch a shard once. Room is
        made by evicting least-recently-used shards not in use; when nothing can be evicted the
        bound is exceeded rather than failing. A missing cache folder is recreated.
        """
        self._maybe_expire()
        path = self.shard_path(shard.sha256)
        if self._touch(path):
            return Fetch(path, False, 0, 0)
        with _flocked(self._lock_path(shard.sha256), fcntl.LOCK_EX):
            if self._touch(path):  # another process fetched it while we waited
                return Fetch(path, False, 0, 0)
            fetched = attempts = vanished = 0
            while attempts < 2:
                self.make_room(shard.size)
                try:
                    digest = self._download(store, shard, path)
                except (FileNotFoundError, FileExistsError):  # the cache folder was deleted under us: go again
                    vanished += 1
                    if vanished > 5:
                        raise
                    continue
                except OSError as exc:
                    if exc.errno != errno.ENOSPC or vanished > 5:
                        raise
                    vanished += 1
                    self.make_room(self.max_bytes or 0, everything=True)
                    continue
                attempts += 1
                fetched += shard.size
                if digest == shard.sha256:
                    return Fetch(path, True, fetched, attempts)
            raise ShardCorrupt(f"shard {shard.key} does not match its sha256 in the index after a re-fetch")

    def _download(self, store: ObjectStore, shard: ShardEntry, path: Path) -> str:
        """Stream the shard into a temp file; rename it into place only when its hash matches."""
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{shard.sha256}.{secrets.token_hex(4)}.part"
        digest = hashlib.sha256()
        try:
            with store.open_read(shard.key) as src, open(tmp, "wb", buffering=0) as out:
                buf = bytearray(CHUNK)
                view = memoryview(buf)
                while n := src.readinto(view):  # type: ignore[attr-defined]
                    digest.update(view[:n])
                    out.write(view[:n])
            hexdigest = digest.hexdigest()
            if hexdigest == shard.sha256:
                os.replace(tmp, path)
            return hexdigest
        finally:
            tmp.unlink(missing_ok=True)

    def _touch(self, path: Path) -> bool:
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False

    def open(self, store: ObjectStore, shard: ShardEntry) -> tuple[OpenShard, Fetch]:
        """Ensure ``shard`` is cached and map it, holding a shared flock so it cannot be evicted meanwhile."""
        for _ in range(8):
            fetch = self.ensure(store, shard)
            try:
                fd = os.open(fetch.path, os.O_RDONLY)
            except FileNotFoundError:  # evicted or wiped between ensure and open
                continue
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink == 0:  # unlinked before our lock: fetch again
                os.close(fd)
                continue
            return OpenShard(fetch.path, fd), fetch
        raise OSError(f"shard {shard.key} keeps disappearing from the cache at {self.root}")

    # -- eviction and expiry ---------------------------------------------------------------------
    def make_room(self, incoming: int, *, everything: bool = False) -> int:
        """Evict least-recently-used shards not in use until ``incoming`` more bytes fit; returns bytes evicted.

        Promises: never removes a shard a reader holds; with ``everything``, evicts all it can.
        """
        if self.max_bytes is None and not everything:
            return 0
        freed = 0
        with _flocked(self.root / "cache.lock", fcntl.LOCK_EX):
            entries = sorted(self._entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            for path, size, _ in entries:
                if not everything and total + incoming <= (self.max_bytes or 0):
                    break
                if self._remove_if_unused(path):
                    total -= size
                    freed += size
        return freed

    def _remove_if_unused(self, path: Path) -> bool:
        fd = _try_exclusive(path)
        if fd is None:
            return False
        try:
            path.unlink(missing_ok=True)
            self.evictions += 1
            return True
        finally:
            os.close(fd)

    def _maybe_expire(self) -> None:
        if self.ttl_seconds is not None and time.time() - self._last_expire > min(60.0, self.ttl_seconds / 2):
            self.expire()

    def expire(self) -> int:
        """Wipe shards unused for longer than the TTL and temp files no fetch owns; returns files removed."""
        self._last_expire = time.time()
        removed = 0
        try:
            parts = list((self.root / "tmp").glob("*.part"))
        except OSError:
            parts = []
        for part in parts:  # a temp file whose shard lock is free belongs to a fetch that died
            sha = part.name.split(".", 1)[0]
            lock = _try_exclusive(self._lock_path(sha))
            if lock is not None or not self._lock_path(sha).exists():
                part.unlink(missing_ok=True)
                removed += 1
            if lock is not None:
                os.close(lock)
        if self.ttl_seconds is None:
            return removed
        cutoff = time.time() - self.ttl_seconds
        with _flocked(self.root / "cache.lock", fcntl.LOCK_EX):
            for path, _, mtime in self._entries():
                if mtime < cutoff and self._remove_if_unused(path):
                    removed += 1
        return removed
