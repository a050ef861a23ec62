"""The PyTorch adapter (torch is the optional ``torch`` extra; the core never imports it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import ShardCache, StreamingDataset, TorchStreamingDataset, build_training_shards
from clinical_pipelines.training.torch_adapter import to_tensors
from clinical_pipelines_tests.test_training_support import put_corpus

BATCH = 4


def _key_and_position(sample: dict) -> tuple[str, int]:
    return sample["key"], sample["position"]


def _loader(ds: StreamingDataset, *, workers: int, rank: int = 0, world: int = 1) -> DataLoader:
    adapter = TorchStreamingDataset(ds, rank=rank, world_size=world, transform=_key_and_position)
    return DataLoader(
        adapter, batch_size=BATCH, num_workers=workers, multiprocessing_context="fork" if workers else None
    )


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_data_loader_batches_follow_the_global_order_and_resume_on_other_counts(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    manifest = put_corpus(local_store, patients=16, images_per_patient=4)
    index = build_training_shards(local_store, manifest, shard_target_bytes=8192).index

    def dataset() -> StreamingDataset:
        return StreamingDataset(local_store, index, "train", ShardCache(tmp_path / "cache"), seed=9, block_size=BATCH)

    single = [s["key"] for s in StreamingDataset(local_store, index, "train", ShardCache(tmp_path / "c1"), seed=9)]
    batches = list(_loader(dataset(), workers=2))
    assert [k for keys, _ in batches for k in keys] == single
    assert torch.cat([p for _, p in batches]).tolist() == list(range(len(single)))

    seen = 3 * BATCH
    state = TorchStreamingDataset(dataset()).state_dict(samples_seen=seen)
    assert state == {"epoch": 0, "position": seen, "seed": 9}
    ranks = []
    for rank in range(2):  # resumed on 2 ranks x 3 workers: step t takes rank 0's then rank 1's batch
        ds = dataset()
        TorchStreamingDataset(ds).load_state_dict(state)
        ranks.append([keys for keys, _ in _loader(ds, workers=3, rank=rank, world=2)])
    steps = [b for pair in zip(ranks[0], ranks[1] + [()], strict=False) for b in pair]
    assert [k for keys in steps for k in keys] == single[seen:]


def test_to_tensors_gives_writable_tensors_that_leave_the_cache_alone(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    manifest = put_corpus(local_store, patients=2, with_notes=False, with_labs=False)
    index = build_training_shards(local_store, manifest, shard_target_bytes=8192).index
    split = next(iter(index.splits))

    def first() -> dict:
        return next(iter(StreamingDataset(local_store, index, split, ShardCache(tmp_path / "c"), shuffle=False)))

    sample = first()
    original = sample["pixels"].copy()
    tensor = to_tensors(sample)["pixels"]
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int16 and tensor.shape == (16, 16)
    np.testing.assert_array_equal(tensor.numpy(), original)
    tensor += 1  # writable, and the cached shard is untouched
    np.testing.assert_array_equal(first()["pixels"], original)


def test_the_core_engine_does_not_import_torch_or_dagster() -> None:
    code = (
        "import sys, clinical_pipelines.training as t, clinical_pipelines.training.reader, "
        "clinical_pipelines.training.writer, clinical_pipelines.training.cache; "
        "bad = [m for m in ('torch', 'dagster') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
