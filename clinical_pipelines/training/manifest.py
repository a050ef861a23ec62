"""Reading a curated version manifest (the #5 contract) without depending on the code that writes it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_pipelines.modalities import DATASET_MODALITIES
from clinical_pipelines.storage.base import ObjectStore, read_all
from clinical_pipelines.zones import curated_manifests_prefix

MANIFEST_SCHEMA = "clinical-pipelines.manifest/1"


class ManifestError(ValueError):
    """The manifest does not follow the curated-version contract."""


@dataclass(frozen=True)
class ObjectRow:
    """One object of a curated version: where it is, what it is, whose it is and which split it is in."""

    key: str
    sha256: str
    size: int
    modality: str
    patient_id: str
    split: str
    label: str | None
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class CuratedVersion:
    """A parsed curated version manifest and its identity (sha256 of the manifest bytes)."""

    dataset: str
    version: int
    version_id: str
    split_seed: int
    objects: tuple[ObjectRow, ...]
    raw: Mapping[str, Any]


def canonical_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a manifest (sorted keys, compact separators, UTF-8)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_manifest(
    source: Mapping[str, Any] | bytes | str | os.PathLike[str], *, version_id: str | None = None
) -> CuratedVersion:
    """Parse a manifest given as a dict, its bytes, or a path to its file, and check the contract.

    Promises: the returned ``version_id`` is ``version_id`` when given, else the sha256 of the
    manifest's bytes (for a dict: of :func:`canonical_bytes`). Rows keep the manifest's order. Raises
    :class:`ManifestError` naming the first problem (wrong schema, unknown modality, missing field,
    duplicate object).
    """
    if isinstance(source, Mapping):
        raw: Mapping[str, Any] = source
        data = canonical_bytes(source)
    else:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ManifestError(f"manifest is not JSON: {exc}") from None
    if raw.get("schema") != MANIFEST_SCHEMA:
        raise ManifestError(f"manifest schema is {raw.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    try:
        rows = tuple(_row(r) for r in raw["objects"])
        seed = int(raw["split"]["seed"])
        dataset, version = str(raw["dataset"]), int(raw["version"])
    except (KeyError, TypeError) as exc:
        raise ManifestError(f"manifest lacks field {exc}") from None
    seen: set[str] = set()
    for row in rows:
        if row.sha256 in seen:
            raise ManifestError(f"object {row.key} appears twice")
        seen.add(row.sha256)
    return CuratedVersion(
        dataset=dataset,
        version=version,
        version_id=version_id or hashlib.sha256(data).hexdigest(),
        split_seed=seed,
        objects=rows,
        raw=raw,
    )


def _row(row: Mapping[str, Any]) -> ObjectRow:
    modality = str(row["modality"])
    if modality not in DATASET_MODALITIES:
        raise ManifestError(f"object {row.get('key')} has unknown modality {modality!r}")
    sha = str(row["sha256"])
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ManifestError(f"object {row.get('key')} has no valid sha256")
    label = row.get("label")
    return ObjectRow(
        key=str(row["key"]),
        sha256=sha,
        size=int(row["size"]),
        modality=modality,
        patient_id=str(row["patient_id"]),
        split=str(row["split"]),
        label=None if label is None else str(label),
        attributes={str(k): str(v) for k, v in (row.get("attributes") or {}).items()},
    )


def latest_manifest_key(store: ObjectStore, dataset: str) -> str | None:
    """Key of the highest-numbered version manifest of ``dataset`` under ``curated/manifests/``, or None.

    Reads every manifest of the dataset (there are few); prefer the curated asset's metadata when known.
    """
    best: tuple[int, str] | None = None
    for info in store.list(curated_manifests_prefix(dataset)):
        if not info.key.endswith(".json"):
            continue
        try:
            number = int(json.loads(read_all(store, info.key)).get("version", -1))
        except ValueError:
            continue
        if best is None or number > best[0]:
            best = (number, info.key)
    return best[1] if best else None
