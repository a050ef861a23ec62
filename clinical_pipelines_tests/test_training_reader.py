"""The streaming reader: global order, partitioning across workers and ranks, resume, S3, metrics."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import (
    ShardCache,
    ShardIndex,
    StreamingDataset,
    build_training_shards,
    global_order,
    reader_slot,
    slot_positions,
)
from clinical_pipelines_tests.test_training_support import decode_dicom, put_corpus

TARGET = 8192


@pytest.fixture
def built(local_store: LocalObjectStore) -> tuple[LocalObjectStore, ShardIndex]:
    manifest = put_corpus(local_store, patients=16, images_per_patient=4)
    return local_store, build_training_shards(local_store, manifest, shard_target_bytes=TARGET).index


def _dataset(store: ObjectStore, index: ShardIndex, cache: Path, **kw: object) -> StreamingDataset:
    kw.setdefault("buffer_size", 8)
    return StreamingDataset(store, index, "train", ShardCache(cache), seed=3, **kw)  # type: ignore[arg-type]


def _read_slot(args: tuple[str, str, str, int, int, int, int, int, dict[str, int]]) -> list[tuple[int, str]]:
    """One reader in its own process (module level so multiprocessing can run it)."""
    root, index_key, cache, rank, world, worker, workers, block, state = args
    store = LocalObjectStore(root, fsync=False)
    ds = StreamingDataset(
        store, index_key, "train", ShardCache(cache), seed=3, buffer_size=8,
        rank=rank, world_size=world, worker=worker, num_workers=workers, block_size=block,
    )  # fmt: skip
    ds.load_state_dict(state)
    return [(s["position"], s["key"]) for s in ds]


def test_one_reader_yields_every_sample_once_in_a_seeded_order(built, tmp_path: Path) -> None:
    store, index = built
    ds = _dataset(store, index, tmp_path / "cache")
    first = [s["key"] for s in ds]
    assert ds.state.epoch == 1 and ds.state.position == 0  # a full epoch moves on to the next
    second = [s["key"] for s in ds]
    expected = {s.key for shard in index.split_shards("train") for s in shard.samples}
    assert sorted(first) == sorted(expected) and len(first) == len(expected) == len(ds)
    assert sorted(second) == sorted(first) and second != first  # another epoch, another order
    ds.set_epoch(0)
    assert [s["key"] for s in ds] == first  # same seed and epoch, same order
    in_order = [s["key"] for s in _dataset(store, index, tmp_path / "cache", shuffle=False)]
    assert in_order == [s.key for shard in index.split_shards("train") for s in shard.samples]


def test_samples_are_ready_to_use(built, tmp_path: Path) -> None:
    store, index = built
    for sample in _dataset(store, index, tmp_path / "cache"):
        meta = sample["meta"]
        assert meta["split"] == "train" and meta["key"] == sample["key"]
        if meta["modality"] == "dicom":
            original = decode_dicom(store.open_read(meta["object_key"]).read())
            np.testing.assert_array_equal(sample["pixels"], original)
            assert sample["pixels"].flags.writeable and sample["pixels"].flags.owndata  # the sample's own copy
        elif meta["modality"] == "notes":
            assert sample["text"].startswith("Note for " + meta["patient_id"])
        else:
            assert sample["table"]["rows"][0][0] == meta["patient_id"]


def test_global_order_is_a_bounded_shuffle() -> None:
    sizes = [5, 7, 3, 9, 6]
    order = global_order(sizes, seed=1, epoch=0, buffer_size=4)
    assert sorted(order.tolist()) == list(range(sum(sizes)))
    assert np.array_equal(order, global_order(sizes, seed=1, epoch=0, buffer_size=4))
    assert not np.array_equal(order, global_order(sizes, seed=1, epoch=1, buffer_size=4))
    assert global_order(sizes, seed=1, epoch=0, shuffle=False).tolist() == list(range(30))


@pytest.mark.parametrize(("world", "workers", "block"), [(1, 2, 1), (2, 3, 4), (3, 1, 2), (2, 2, 5)])
def test_slots_interleave_to_the_global_order(world: int, workers: int, block: int) -> None:
    total, start = 103, 17
    by_block: dict[int, list[int]] = {}
    for rank in range(world):
        for worker in range(workers):
            slot, slots = reader_slot(rank, world, worker, workers)
            for pos in slot_positions(total, start, slot=slot, slots=slots, block_size=block).tolist():
                by_block.setdefault((pos - start) // block, []).append(pos)
                # DataLoader order: step t of rank r is block t * world + r, served by worker t % workers
                k = (pos - start) // block
                assert (k % world, (k // world) % workers) == (rank, worker)
    merged = [p for k in sorted(by_block) for p in by_block[k]]
    assert merged == list(range(start, total))


def test_drop_last_gives_every_slot_the_same_number_of_full_blocks() -> None:
    total, start, block, slots = 103, 5, 4, 6
    parts = [slot_positions(total, start, slot=s, slots=slots, block_size=block, drop_last=True) for s in range(slots)]
    assert {len(p) for p in parts} == {((total - start) // (block * slots)) * block}
    assert sorted(np.concatenate(parts).tolist()) == list(range(start, start + 4 * block * slots))


def test_worker_processes_and_ranks_read_every_sample_exactly_once(built, tmp_path: Path) -> None:
    store, index = built
    index_key = f"training/demo/{index.version_id}/index.json"
    single = [(s["position"], s["key"]) for s in _dataset(store, index, tmp_path / "one")]
    state = {"epoch": 0, "position": 0, "seed": 3}
    for world, workers in [(1, 3), (2, 2)]:
        jobs = [
            (str(store.root), index_key, str(tmp_path / "shared"), r, world, w, workers, 2, state)
            for r in range(world) for w in range(workers)
        ]  # fmt: skip
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            parts = pool.map(_read_slot, jobs)
        union = sorted(p for part in parts for p in part)
        assert union == single  # every sample once per epoch, and in the single-reader order


def test_resume_on_a_different_number_of_workers_and_ranks_gives_the_same_remainder(built, tmp_path: Path) -> None:
    store, index = built
    full = [(s["position"], s["key"]) for s in _dataset(store, index, tmp_path / "c")]
    ds = _dataset(store, index, tmp_path / "c")
    ds.set_epoch(0)
    taken = []
    for sample in ds:
        taken.append((sample["position"], sample["key"]))
        if len(taken) == 13:
            break
    state = ds.state_dict()
    assert state == {"epoch": 0, "position": 13, "seed": 3} and taken == full[:13]
    resumed = _dataset(store, index, tmp_path / "c")
    resumed.load_state_dict(state)
    assert [(s["position"], s["key"]) for s in resumed] == full[13:]
    index_key = f"training/demo/{index.version_id}/index.json"
    jobs = [(str(store.root), index_key, str(tmp_path / "c"), r, 3, w, 2, 1, state) for r in range(3) for w in range(2)]
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        parts = pool.map(_read_slot, jobs)
    assert sorted(p for part in parts for p in part) == full[13:]
    with pytest.raises(ValueError, match="seed"):
        resumed.load_state_dict({**state, "seed": 4})


def test_the_s3_path_streams_through_the_cache_with_metrics(store: ObjectStore, tmp_path: Path) -> None:
    manifest = put_corpus(store, patients=8, images_per_patient=3)
    index = build_training_shards(store, manifest, shard_target_bytes=TARGET).index
    cold = _dataset(store, index, tmp_path / "cache", prefetch=2)
    keys = [s["key"] for s in cold]
    shards = index.split_shards("train")
    assert sorted(keys) == sorted(s.key for shard in shards for s in shard.samples)
    m = cold.metrics
    assert m.cache_misses == len(shards) and m.bytes_fetched == sum(s.size for s in shards)
    assert m.samples == len(keys) and m.samples_per_s > 0 and m.io_wait_s >= 0
    warm = _dataset(store, index, tmp_path / "cache")
    assert sorted(s["key"] for s in warm) == sorted(keys)
    assert warm.metrics.hit_rate == 1.0 and warm.metrics.bytes_fetched == 0
    assert warm.metrics.as_dict()["cache_hit_rate"] == 1.0
