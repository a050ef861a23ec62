"""The shard index of one curated version: sample key -> shard, offset, length, sha256 (and member spans)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from clinical_pipelines.storage.base import ObjectStore, read_all

INDEX_SCHEMA = "clinical-pipelines.training-index/1"
SHARD_FORMAT = "webdataset-tar"


class ShardIndexError(ValueError):
    """The index is malformed or names something it does not hold."""


@dataclass(frozen=True)
class PixelLayout:
    """Where a sample's decoded pixel array starts in the shard (inside its ``.npy`` member), its dtype and shape."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SampleEntry:
    """Where one sample lies in its shard: the byte span of all its tar members, their sha256, each member's data."""

    key: str
    offset: int
    length: int
    sha256: str
    members: Mapping[str, tuple[int, int]]
    pixels: PixelLayout | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (members as ``[offset, length]`` lists)."""
        doc: dict[str, Any] = {
            "key": self.key,
            "offset": self.offset,
            "length": self.length,
            "sha256": self.sha256,
            "members": {k: list(v) for k, v in sorted(self.members.items())},
        }
        if self.pixels is not None:
            doc["pixels"] = {"offset": self.pixels.offset, "dtype": self.pixels.dtype, "shape": list(self.pixels.shape)}
        return doc

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SampleEntry:
        """Inverse of :meth:`to_json`."""
        members = {str(k): (int(v[0]), int(v[1])) for k, v in raw["members"].items()}
        px = raw.get("pixels")
        pixels = (
            None if px is None else PixelLayout(int(px["offset"]), str(px["dtype"]), tuple(int(n) for n in px["shape"]))
        )
        return cls(str(raw["key"]), int(raw["offset"]), int(raw["length"]), str(raw["sha256"]), members, pixels)


@dataclass(frozen=True)
class ShardEntry:
    """One shard: its object key, split, sha256, size in bytes and samples in file order."""

    key: str
    split: str
    sha256: str
    size: int
    samples: tuple[SampleEntry, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "key": self.key,
            "split": self.split,
            "sha256": self.sha256,
            "size": self.size,
            "samples": [s.to_json() for s in self.samples],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ShardEntry:
        """Inverse of :meth:`to_json`."""
        samples = tuple(SampleEntry.from_json(s) for s in raw["samples"])
        return cls(str(raw["key"]), str(raw["split"]), str(raw["sha256"]), int(raw["size"]), samples)


@dataclass(frozen=True)
class ShardIndex:
    """All shards of one curated version, grouped by split; written once as ``index.json`` beside them."""

    dataset: str
    version_id: str
    shard_target_bytes: int
    shards: tuple[ShardEntry, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    def split_shards(self, split: str) -> tuple[ShardEntry, ...]:
        """The shards of ``split`` in build order (empty when the split has no samples)."""
        return tuple(s for s in self.shards if s.split == split)

    @property
    def splits(self) -> dict[str, int]:
        """Sample count per split."""
        counts: dict[str, int] = {}
        for shard in self.shards:
            counts[shard.split] = counts.get(shard.split, 0) + len(shard.samples)
        return counts

    @cached_property
    def _locations(self) -> dict[str, tuple[ShardEntry, SampleEntry]]:
        return {sample.key: (shard, sample) for shard in self.shards for sample in shard.samples}

    def locate(self, sample_key: str) -> tuple[ShardEntry, SampleEntry]:
        """The shard and span of ``sample_key``; raises :class:`ShardIndexError` when the index lacks it."""
        try:
            return self._locations[sample_key]
        except KeyError:
            raise ShardIndexError(
                f"sample {sample_key} is not in the index of {self.dataset}/{self.version_id}"
            ) from None

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys) of the whole index."""
        doc = {
            "schema": INDEX_SCHEMA,
            "format": SHARD_FORMAT,
            "dataset": self.dataset,
            "version_id": self.version_id,
            "shard_target_bytes": self.shard_target_bytes,
            "splits": self.splits,
            "info": dict(self.info),
            "shards": [s.to_json() for s in self.shards],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> ShardIndex:
        """Parse an index written by :meth:`to_bytes`; raises :class:`ShardIndexError` if it is not one."""
        try:
            raw = json.loads(data)
            if raw.get("schema") != INDEX_SCHEMA:
                raise ShardIndexError(f"index schema is {raw.get('schema')!r}, expected {INDEX_SCHEMA!r}")
            return cls(
                dataset=str(raw["dataset"]),
                version_id=str(raw["version_id"]),
                shard_target_bytes=int(raw["shard_target_bytes"]),
                shards=tuple(ShardEntry.from_json(s) for s in raw["shards"]),
                info=dict(raw.get("info") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ShardIndexError):
                raise
            raise ShardIndexError(f"malformed shard index: {type(exc).__name__}: {exc}") from None

    @classmethod
    def load(cls, store: ObjectStore, key: str) -> ShardIndex:
        """Read and parse the index stored at ``key``."""
        return cls.from_bytes(read_all(store, key))
