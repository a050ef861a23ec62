"""Training-ready data: shards and an index built from a curated version, and a streaming reader.

Plain Python (no Dagster, no torch): :func:`build_training_shards` writes WebDataset-compatible tar
shards plus ``index.json`` into the training zone; :class:`StreamingDataset` streams a split through
a local :class:`ShardCache` in a deterministic, resumable global order. ``TorchStreamingDataset``
(imported lazily, needs the ``torch`` extra) adapts it to ``torch.utils.data.DataLoader``.
"""

from typing import Any

from clinical_pipelines.training.cache import ShardCache, ShardCorrupt
from clinical_pipelines.training.index import SampleEntry, ShardEntry, ShardIndex, ShardIndexError
from clinical_pipelines.training.manifest import CuratedVersion, ManifestError, ObjectRow, load_manifest
from clinical_pipelines.training.metrics import ReaderMetrics
from clinical_pipelines.training.order import global_order, reader_slot, slot_positions
from clinical_pipelines.training.reader import Sample, SampleCorrupt, StreamingDataset, decode_sample
from clinical_pipelines.training.state import ReaderState
from clinical_pipelines.training.writer import (
    DEFAULT_SHARD_TARGET_BYTES,
    BuildReport,
    ObjectMismatch,
    build_training_shards,
)

__all__ = [
    "DEFAULT_SHARD_TARGET_BYTES",
    "BuildReport",
    "CuratedVersion",
    "ManifestError",
    "ObjectMismatch",
    "ObjectRow",
    "ReaderMetrics",
    "ReaderState",
    "Sample",
    "SampleCorrupt",
    "SampleEntry",
    "ShardCache",
    "ShardCorrupt",
    "ShardEntry",
    "ShardIndex",
    "ShardIndexError",
    "StreamingDataset",
    "TorchStreamingDataset",
    "build_training_shards",
    "decode_sample",
    "global_order",
    "load_manifest",
    "reader_slot",
    "slot_positions",
]


def __getattr__(name: str) -> Any:
    """``TorchStreamingDataset`` is imported on first use, so the core never imports torch."""
    if name == "TorchStreamingDataset":
        from clinical_pipelines.training.torch_adapter import TorchStreamingDataset

        return TorchStreamingDataset
    raise AttributeError(name)
