"""Read and write the raw zone: encrypted content-addressed objects and per-drop records."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field

from clinical_pipelines.storage import ObjectAlreadyExists, ObjectStore, read_all
from clinical_pipelines.storage.envelope import DecryptingReader, decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import raw_drop_record_key, raw_object_key


class DropConflict(Exception):
    """A drop id was ingested before with different content: drops are immutable."""


@dataclass(frozen=True)
class RawFile:
    """One accepted file of a drop. ``path`` is the source's name for it: PHI-bearing, stays encrypted."""

    path: str
    sha256: str
    size: int
    modality: str


@dataclass(frozen=True)
class RawDropRecord:
    """What one drop put into the raw zone. Deterministic: re-ingesting yields the same record."""

    source: str
    drop_id: str
    manifest_sha256: str
    files: tuple[RawFile, ...]
    quarantined: tuple[tuple[str, str], ...] = field(default=())  # (item id, reason)

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace)."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RawDropRecord:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(data)
        return cls(
            source=doc["source"],
            drop_id=doc["drop_id"],
            manifest_sha256=doc["manifest_sha256"],
            files=tuple(RawFile(**f) for f in doc["files"]),
            quarantined=tuple(tuple(q) for q in doc["quarantined"]),  # type: ignore[misc]
        )

    def by_modality(self, modality: str) -> tuple[RawFile, ...]:
        """The accepted files of one modality."""
        return tuple(f for f in self.files if f.modality == modality)


class RawZone:
    """The raw zone of one object store, encrypted under one key ring."""

    def __init__(self, store: ObjectStore, keyring: KeyRing) -> None:
        self.store = store
        self.keyring = keyring

    def has_object(self, sha256: str) -> bool:
        """True if the content with this sha256 is already stored."""
        return self.store.head(raw_object_key(sha256)) is not None

    def open_object(self, sha256: str) -> DecryptingReader:
        """Stream an object's plaintext; authenticated chunk by chunk."""
        key = raw_object_key(sha256)
        return DecryptingReader(self.store.open_read(key), self.keyring, context=key)

    def read_object(self, sha256: str) -> bytes:
        """An object's whole plaintext (for small objects)."""
        with self.open_object(sha256) as reader:
            return reader.read()

    def read_prefix(self, sha256: str, size: int) -> bytes:
        """At least the first ``size`` plaintext bytes of an object (fewer only if it is shorter).

        Only the chunks covering them are read, authenticated and decrypted.
        """
        with self.open_object(sha256) as reader:
            return reader.read(size)

    def put_small_object(self, data: bytes) -> str:
        """Store an in-memory value (drop.json, a validated table) content-addressed, once; returns its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has_object(digest):
            with contextlib.suppress(ObjectAlreadyExists):  # a concurrent run stored it first
                key = raw_object_key(digest)
                self.store.put_bytes(key, encrypt_bytes(data, self.keyring, context=key), write_once=True)
        return digest

    def write_drop_record(self, record: RawDropRecord) -> bool:
        """Store ``record`` once. True if written now, False if an identical one was there.

        Raises :class:`DropConflict` if a different record exists for the drop.
        """
        key = raw_drop_record_key(record.source, record.drop_id)
        try:
            self.store.put_bytes(key, encrypt_bytes(record.to_json(), self.keyring, context=key), write_once=True)
            return True
        except ObjectAlreadyExists:
            existing = self.read_drop_record(record.source, record.drop_id)
            if existing.to_json() != record.to_json():
                raise DropConflict(
                    f"drop {record.source}/{record.drop_id} was ingested before with different content; "
                    "drops are immutable: send changed data as a new drop id"
                ) from None
            return False

    def read_drop_record(self, source: str, drop_id: str) -> RawDropRecord:
        """The record of an ingested drop (raises ObjectNotFound if it was never ingested)."""
        key = raw_drop_record_key(source, drop_id)
        return RawDropRecord.from_json(decrypt_bytes(read_all(self.store, key), self.keyring, context=key))
