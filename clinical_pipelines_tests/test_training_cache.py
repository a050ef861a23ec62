"""The local shard cache under faults: corrupt shards, a full cache, a deleted folder, kill -9, TTL."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from clinical_pipelines.storage import ObjectInfo
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import ShardCache, ShardCorrupt, ShardIndex, StreamingDataset, build_training_shards
from clinical_pipelines_tests.test_training_support import put_corpus

TARGET = 8192


class FaultyStore:
    """A real store in front of another: counts reads, and corrupts or slows the first ``faults`` reads of a key."""

    def __init__(self, inner: LocalObjectStore, key: str = "", *, faults: int = 0, delay: float = 0.0) -> None:
        self.inner, self.key, self.faults, self.delay = inner, key, faults, delay
        self.url = inner.url
        self.reads: dict[str, int] = {}

    def open_read(self, key: str) -> BinaryIO:
        self.reads[key] = self.reads.get(key, 0) + 1
        if key == self.key and self.reads[key] <= self.faults:
            data = bytearray(self.inner.open_read(key).read())
            data[len(data) // 2] ^= 0xFF
            return io.BytesIO(bytes(data))
        if key == self.key and self.delay:
            return _Slow(self.inner.open_read(key), self.delay)
        return self.inner.open_read(key)

    def head(self, key: str) -> ObjectInfo | None:
        return self.inner.head(key)

    def list(self, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after=start_after, page_size=page_size)


class _Slow(io.RawIOBase):
    def __init__(self, inner: BinaryIO, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        data = self.inner.read(min(len(buffer), 512))
        buffer[: len(data)] = data
        return len(data)


@pytest.fixture
def built(local_store: LocalObjectStore) -> tuple[LocalObjectStore, ShardIndex]:
    manifest = put_corpus(local_store, patients=16, images_per_patient=4)
    return local_store, build_training_shards(local_store, manifest, shard_target_bytes=TARGET).index


def _keys(ds: StreamingDataset) -> list[str]:
    return [s["key"] for s in ds]


def _all_train(index: ShardIndex) -> list[str]:
    return sorted(s.key for shard in index.split_shards("train") for s in shard.samples)


def test_a_corrupt_shard_is_refetched_once_then_named(built, tmp_path: Path) -> None:
    store, index = built
    shard = index.split_shards("train")[1]
    once = FaultyStore(store, shard.key, faults=1)
    ds = StreamingDataset(once, index, "train", ShardCache(tmp_path / "a"), seed=1)  # type: ignore[arg-type]
    assert sorted(_keys(ds)) == _all_train(index)
    assert once.reads[shard.key] == 2 and ds.metrics.refetches == 1

    always = FaultyStore(store, shard.key, faults=99)
    cache = ShardCache(tmp_path / "b")
    with pytest.raises(ShardCorrupt, match=shard.key):
        _keys(StreamingDataset(always, index, "train", cache, seed=1))  # type: ignore[arg-type]
    assert always.reads[shard.key] == 2
    assert not cache.shard_path(shard.sha256).exists() and not list((cache.root / "tmp").iterdir())


def test_a_full_cache_evicts_least_recently_used_shards_not_in_use(built, tmp_path: Path) -> None:
    store, index = built
    shards = index.split_shards("train")
    bound = int(2.5 * max(s.size for s in shards))
    ds = StreamingDataset(store, index, "train", ShardCache(tmp_path / "c", max_bytes=bound), seed=2, buffer_size=4)
    assert sorted(_keys(ds)) == _all_train(index)
    assert ds.cache.cached_bytes() <= bound and ds.cache.evictions > 0

    a, b, c = shards[0], shards[1], shards[2]
    cache = ShardCache(tmp_path / "lru", max_bytes=2 * max(a.size, b.size, c.size))
    assert a.size + b.size + c.size > cache.max_bytes
    cache.ensure(store, a)
    time.sleep(0.02)
    cache.ensure(store, b)
    time.sleep(0.02)
    assert not cache.ensure(store, a).fetched  # a hit refreshes a
    cache.ensure(store, c)
    assert cache.shard_path(a.sha256).exists() and not cache.shard_path(b.sha256).exists()

    tight = ShardCache(tmp_path / "tight", max_bytes=1)
    held, _ = tight.open(store, a)  # a reader holds a: it must survive, and b must still fit in
    assert tight.ensure(store, b).fetched
    assert tight.shard_path(a.sha256).exists()
    held.release()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_cache_folder_deleted_mid_epoch_is_recovered(built, tmp_path: Path, prefetch: int) -> None:
    store, index = built
    root = tmp_path / "cache"
    ds = StreamingDataset(store, index, "train", ShardCache(root), seed=4, buffer_size=4, prefetch=prefetch)
    keys = []
    for i, sample in enumerate(ds):
        keys.append(sample["key"])
        if i == 5:
            shutil.rmtree(root, ignore_errors=True)  # the prefetch thread may be writing into it meanwhile
            assert prefetch or not root.exists()
    assert sorted(keys) == _all_train(index) and ds.state.epoch == 1
    assert any((root / "shards").iterdir())


def _fetch_slowly(root: str, store_root: str, index_key: str) -> None:
    store = LocalObjectStore(store_root, fsync=False)
    shard = ShardIndex.load(store, index_key).split_shards("train")[0]
    ShardCache(root).ensure(FaultyStore(store, shard.key, delay=0.05), shard)  # type: ignore[arg-type]


def test_kill_9_of_a_fetching_reader_leaves_no_stale_lock_or_temp(built, tmp_path: Path) -> None:
    store, index = built
    root = tmp_path / "cache"
    index_key = f"training/demo/{index.version_id}/index.json"
    child = multiprocessing.get_context("fork").Process(
        target=_fetch_slowly, args=(str(root), str(store.root), index_key)
    )
    child.start()
    deadline = time.time() + 20
    while not list((root / "tmp").glob("*.part")) if (root / "tmp").exists() else True:
        assert time.time() < deadline and child.is_alive()
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    shard = index.split_shards("train")[0]
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(ShardCache(root).ensure(store, shard)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert result and result[0].fetched  # type: ignore[attr-defined]  # the dead reader's lock is gone
    assert not list((root / "tmp").glob("*.part"))
    assert ShardCache(root).shard_path(shard.sha256).read_bytes() == store.open_read(shard.key).read()


def test_shards_unused_past_the_ttl_are_wiped(built, tmp_path: Path) -> None:
    store, index = built
    old, fresh = index.split_shards("train")[:2]
    cache = ShardCache(tmp_path / "ttl", ttl_seconds=60)
    cache.ensure(store, old)
    cache.ensure(store, fresh)
    os.utime(cache.shard_path(old.sha256), (time.time() - 120, time.time() - 120))
    reopened = ShardCache(tmp_path / "ttl", ttl_seconds=60)
    assert not reopened.shard_path(old.sha256).exists() and reopened.shard_path(fresh.sha256).exists()
    assert ShardCache(tmp_path / "ttl").shard_path(fresh.sha256).exists()  # no TTL: nothing wiped
