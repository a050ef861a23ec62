"""Where each zone keeps what: the one place object keys are spelled out (DESIGN.md §2)."""

from __future__ import annotations

LANDING = "landing"
RAW = "raw"
QUARANTINE = "quarantine"
CURATED = "curated"
TRAINING = "training"
ARCHIVE = "archive"


def landing_drop_prefix(source: str, drop_id: str) -> str:
    """``landing/<source>/<drop_id>/``: where a source puts one drop."""
    return f"{LANDING}/{source}/{drop_id}/"


def raw_object_key(address: str) -> str:
    """Where an accepted (encrypted) object lives in the raw zone, by its keyed address.

    ``address`` is :meth:`~clinical_pipelines.storage.names.NameKey.object_address` of the
    plaintext sha256 (an HMAC: the layout cannot confirm whether a known file was ingested).
    One level of 256 fan-out folders: creating a folder costs more than writing a small object
    on common file systems, and 256 folders hold millions of objects.
    """
    return f"{RAW}/objects/hmac/{address[:2]}/{address}"


def raw_drop_record_key(source: str, drop_id: str) -> str:
    """The encrypted record of what a drop contributed to the raw zone."""
    return f"{RAW}/drops/{source}/{drop_id}/record.json.enc"


def raw_drop_landing_state_key(source: str, drop_id: str) -> str:
    """Size and time of the drop.json a drop was ingested from: how a re-sent drop id is noticed."""
    return f"{RAW}/drops/{source}/{drop_id}/landing.json"


def validated_record_key(modality: str, source: str, drop_id: str) -> str:
    """The encrypted record of which raw items of a drop passed validation (and the validated tables)."""
    return f"{RAW}/validated/{modality}/{source}/{drop_id}.json.enc"


def curated_object_key(sha256: str) -> str:
    """Content address of a de-identified object (no PHI, so stored in the clear)."""
    return f"{CURATED}/objects/sha256/{sha256[:2]}/{sha256}"


def deid_record_key(modality: str, source: str, drop_id: str) -> str:
    """What one drop's de-identification produced: pseudonymous ids, hashes, sizes (no PHI)."""
    return f"{CURATED}/deid/{modality}/{source}/{drop_id}.json"


def deid_lineage_key(modality: str, source: str, drop_id: str) -> str:
    """Raw object -> de-identified object mapping: links back to PHI, so encrypted in the raw zone."""
    return f"{RAW}/deid-map/{modality}/{source}/{drop_id}.json.enc"


def quarantine_prefix(source: str, drop_id: str) -> str:
    """Folder of a (safely named) drop's quarantined items."""
    return f"{QUARANTINE}/{source}/{drop_id}/"


def quarantine_invalid_prefix(folder_id: str) -> str:
    """Folder for a landing folder whose own name is unsafe: addressed by its keyed id only."""
    return f"{QUARANTINE}/_invalid/{folder_id}/"


def training_version_prefix(dataset: str, version_id: str) -> str:
    """``training/<dataset>/<version_id>/``: the shards and index built from one curated version."""
    return f"{TRAINING}/{dataset}/{version_id}/"


def training_index_key(dataset: str, version_id: str) -> str:
    """The index of one curated version's shards (sample key -> shard, offset, length, sha256)."""
    return f"{training_version_prefix(dataset, version_id)}index.json"


def training_shard_key(dataset: str, version_id: str, split: str, number: int) -> str:
    """Shard ``number`` of one split: a WebDataset-compatible, uncompressed POSIX tar."""
    return f"{training_version_prefix(dataset, version_id)}{split}/shard-{number:06d}.tar"


def curated_manifests_prefix(dataset: str) -> str:
    """``curated/manifests/<dataset>/``: every version manifest of one curated dataset."""
    return f"{CURATED}/manifests/{dataset}/"


def curated_manifest_key(dataset: str, version_id: str) -> str:
    """A curated version's manifest, addressed by its own sha256 (the version id); written once."""
    return f"{curated_manifests_prefix(dataset)}{version_id}.json"


def curated_version_claim_key(dataset: str, number: int) -> str:
    """The write-once claim of version ``number`` of a dataset: holds the version id that won the number."""
    return f"{CURATED}/versions/{dataset}/{number:08d}"


def curated_provenance_key(dataset: str, version_id: str) -> str:
    """The FHIR R4 Provenance resource exported for one curated version."""
    return f"{CURATED}/provenance/{dataset}/{version_id}.json"
