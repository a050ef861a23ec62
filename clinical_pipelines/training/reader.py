"""The streaming dataset: samples of one split, in a deterministic global order, from a local shard cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from clinical_pipelines.storage.base import ObjectStore
from clinical_pipelines.training.cache import Fetch, OpenShard, ShardCache
from clinical_pipelines.training.index import SampleEntry, ShardEntry, ShardIndex
from clinical_pipelines.training.metrics import ReaderMetrics
from clinical_pipelines.training.order import DEFAULT_BUFFER_SIZE, global_order, reader_slot, slot_positions
from clinical_pipelines.training.state import ReaderState

Sample = dict[str, Any]


class SampleCorrupt(OSError):
    """A sample's bytes in a cached shard do not match the index (only checked with ``verify_samples``)."""


def decode_sample(shard: OpenShard, entry: SampleEntry, *, verify: bool = False) -> tuple[Sample, int]:
    """The sample ``entry`` of an open cached shard, and its payload size in bytes.

    Promises: ``meta`` is the sample's JSON; DICOM samples carry ``pixels``, a writable numpy array of
    the recorded dtype and shape that the shard's bytes were read straight into (one ``preadv`` for
    JSON and pixels: one copy, no decode); notes carry ``text``; tables carry ``table`` (columns and
    rows). With ``verify`` the sample's span is hashed against the index first.
    """
    if verify and hashlib.sha256(shard.read(entry.offset, entry.length)).hexdigest() != entry.sha256:
        raise SampleCorrupt(f"sample {entry.key} in {shard.path.name} does not match the index")
    members = entry.members
    offset, length = members["json"]
    layout = entry.pixels
    if layout is not None and layout.offset > offset + length:
        array = np.empty(layout.shape, dtype=layout.dtype)
        head, gap = bytearray(length), bytearray(layout.offset - offset - length)
        shard.read_into([head, gap, memoryview(array).cast("B")], offset, layout.offset - offset + array.nbytes)
        sample: Sample = {"key": entry.key, "meta": json.loads(head), "pixels": array}
        return sample, length + array.nbytes
    meta = json.loads(shard.read(offset, length))
    sample = {"key": entry.key, "meta": meta}
    nbytes = length
    if "pixels" in meta:  # an index without pixel layouts: find the array from the JSON
        offset, length = members["npy"]
        array = np.empty(meta["pixels"]["shape"], dtype=meta["pixels"]["dtype"])
        shard.read_into([memoryview(array).cast("B")], offset + length - array.nbytes, array.nbytes)
        sample["pixels"] = array
        nbytes += array.nbytes
    if "txt" in members:
        offset, length = members["txt"]
        sample["text"] = shard.read(offset, length).decode("utf-8")
        nbytes += length
    if "table" in meta:
        sample["table"] = meta["table"]
    return sample, nbytes


@dataclasses.dataclass
class _Plan:
    """One reader's walk through an epoch: positions, and per position the shard and sample to read."""

    positions: np.ndarray
    shard_of: np.ndarray
    local: np.ndarray
    first_use: list[int]
    last_use: dict[int, int]


class StreamingDataset:
    """Streams the samples of one split of a shard index, through a local :class:`ShardCache`.

    One instance is one reader: ``rank`` of ``world_size`` and data-loader ``worker`` of
    ``num_workers``. All readers with the same (seed, epoch, shuffle, buffer_size) share one global
    order (see :mod:`clinical_pipelines.training.order`); each yields its blocks of ``block_size``
    positions. Iterating resumes from :attr:`state` and, after a complete epoch, moves the state to
    the next one. Shards are fetched ``prefetch`` ahead by background threads. With ``drop_last`` the
    epoch's incomplete last round of blocks is skipped, so every rank sees the same number of batches.
    """

    def __init__(
        self,
        store: ObjectStore,
        index: ShardIndex | str,
        split: str,
        cache: ShardCache,
        *,
        seed: int = 0,
        shuffle: bool = True,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        block_size: int = 1,
        prefetch: int = 2,
        verify_samples: bool = False,
        drop_last: bool = False,
    ) -> None:
        self.store = store
        self.index = index if isinstance(index, ShardIndex) else ShardIndex.load(store, index)
        self.split = split
        self.cache = cache
        self.seed, self.shuffle, self.buffer_size = seed, shuffle, buffer_size
        self.rank, self.world_size, self.worker, self.num_workers = rank, world_size, worker, num_workers
        self.slot, self.slots = reader_slot(rank, world_size, worker, num_workers)
        self.block_size, self.prefetch, self.verify_samples = block_size, prefetch, verify_samples
        self.drop_last = drop_last
        self.shards: tuple[ShardEntry, ...] = self.index.split_shards(split)
        sizes = [len(s.samples) for s in self.shards]
        self._starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self._epoch = self._position = 0
        self.metrics = ReaderMetrics()
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Samples in the split (all readers together)."""
        return int(self._starts[-1])

    def for_reader(self, *, rank: int, world_size: int, worker: int, num_workers: int) -> StreamingDataset:
        """A copy of this dataset (same index, cache, seed and state) acting as another reader."""
        other = StreamingDataset(
            self.store, self.index, self.split, self.cache, seed=self.seed, shuffle=self.shuffle,
            buffer_size=self.buffer_size, rank=rank, world_size=world_size, worker=worker, num_workers=num_workers,
            block_size=self.block_size, prefetch=self.prefetch, verify_samples=self.verify_samples,
            drop_last=self.drop_last,
        )  # fmt: skip
        other.state = self.state
        return other

    # -- order and state ---------------------------------------------------------------------------
    def order(self, epoch: int) -> np.ndarray:
        """Sample ids of ``epoch`` in global order (ids number the split's samples shard by shard)."""
        if epoch not in self._orders:
            self._orders = {epoch: global_order([len(s.samples) for s in self.shards], self.seed, epoch,
                                                shuffle=self.shuffle, buffer_size=self.buffer_size)}  # fmt: skip
        return self._orders[epoch]

    def sample_key(self, sample_id: int) -> str:
        """The key of sample ``sample_id`` (as numbered by :meth:`order`)."""
        shard = int(np.searchsorted(self._starts, sample_id, side="right") - 1)
        return self.shards[shard].samples[sample_id - int(self._starts[shard])].key

    @property
    def state(self) -> ReaderState:
        """Where the next iteration starts: epoch and global position (after the last sample yielded)."""
        return ReaderState(self._epoch, self._position, self.seed)

    @state.setter
    def state(self, state: ReaderState) -> None:
        self._epoch, self._position = state.epoch, state.position

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning at the next iteration."""
        self.state = ReaderState(epoch, 0, self.seed)

    def state_dict(self, samples_seen: int | None = None) -> dict[str, int]:
        """The resumable state: with ``samples_seen`` (consumed by all readers together in the current
        epoch, e.g. steps x global batch), that position; else this reader's own position, exact when it
        is the only reader."""
        if samples_seen is None:
            return self.state.to_dict()
        return ReaderState(self.state.epoch, min(len(self), samples_seen), self.seed).to_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from a :meth:`state_dict`; refuses a state saved under another seed."""
        restored = ReaderState.from_dict(state)
        if restored.seed != self.seed:
            raise ValueError(f"state was saved with seed {restored.seed}, this dataset uses {self.seed}")
        self.state = restored

    # -- iteration ---------------------------------------------------------------------------------
    def _plan(self, epoch: int, start: int) -> _Plan:
        positions = slot_positions(
            len(self), start, slot=self.slot, slots=self.slots, block_size=self.block_size, drop_last=self.drop_last
        )
        ids = self.order(epoch)[positions]
        shard_of = np.searchsorted(self._starts, ids, side="right") - 1
        local = ids - self._starts[shard_of]
        shard_list = shard_of.tolist()
        first_use = list(dict.fromkeys(shard_list))
        last_use = {s: i for i, s in enumerate(shard_list)}
        return _Plan(positions, shard_of, local, first_use, last_use)

    def __iter__(self) -> Iterator[Sample]:
        """Yield this reader's samples from :attr:`state` to the end of the epoch, then advance the epoch.

        Promises: each yielded sample's ``position`` is its place in the epoch's global order; the
        union over all readers of one epoch is every sample of the split exactly once.
        """
        epoch, start = self._epoch, self._position
        plan = self._plan(epoch, start)
        self.metrics.start()
        opened: dict[int, OpenShard] = {}
        pending: dict[int, Future[Fetch]] = {}
        upcoming = deque(plan.first_use)
        pool = (
            ThreadPoolExecutor(max_workers=min(2, self.prefetch), thread_name_prefix="shard-prefetch")
            if self.prefetch > 0
            else None
        )
        self._schedule(pool, upcoming, pending)  # the first shards are fetched in parallel, too
        shards, metrics, verify = self.shards, self.metrics, self.verify_samples
        releases = [plan.last_use[s] == i for i, s in enumerate(plan.shard_of.tolist())]
        try:
            for position, shard_no, local, release in zip(
                plan.positions.tolist(), plan.shard_of.tolist(), plan.local.tolist(), releases, strict=True
            ):
                shard = opened.get(shard_no)
                if shard is None:
                    if upcoming and upcoming[0] == shard_no:
                        upcoming.popleft()
                    self._schedule(pool, upcoming, pending)
                    shard = opened[shard_no] = self._open(shard_no, pending)
                sample, nbytes = decode_sample(shard, shards[shard_no].samples[local], verify=verify)
                sample["position"] = position
                sample["epoch"] = epoch
                if release:
                    opened.pop(shard_no).release()
                    if self.cache.max_bytes is not None:
                        self.cache.make_room(0)  # back under the bound once shards leave use
                self._position = position + 1
                metrics.samples += 1
                metrics.sample_bytes += nbytes
                yield sample
            self._epoch, self._position = epoch + 1, 0
        finally:
            metrics.stop()
            for shard in opened.values():
                shard.release()
            if pool is not None:
                for future in pending.values():
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)

    def _schedule(
        self, pool: ThreadPoolExecutor | None, upcoming: deque[int], pending: dict[int, Future[Fetch]]
    ) -> None:
        if pool is None:
            return
        for shard_no in list(upcoming)[: self.prefetch]:
            if shard_no not in pending:
                pending[shard_no] = pool.submit(self.cache.ensure, self.store, self.shards[shard_no])

    def _open(self, shard_no: int, pending: dict[int, Future[Fetch]]) -> OpenShard:
        shard = self.shards[shard_no]
        waited = time.perf_counter()
        fetched = 0
        attempts = 0
        future = pending.pop(shard_no, None)
        if future is not None:
            prefetched = future.result()  # re-raises a fetch error (e.g. ShardCorrupt) here
            fetched, attempts = prefetched.bytes_fetched, prefetched.attempts
        opened, fetch = self.cache.open(self.store, shard)
        fetched += fetch.bytes_fetched
        attempts += fetch.attempts
        self.metrics.io_wait_s += time.perf_counter() - waited
        self.metrics.shard_opens += 1
        if fetched:
            self.metrics.cache_misses += 1
            self.metrics.bytes_fetched += fetched
            self.metrics.refetches += max(0, attempts - 1)
        else:
            self.metrics.cache_hits += 1
        return opened
