"""Read and write the raw zone: encrypted content-addressed objects and per-drop records."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field

from clinical_pipelines.storage import ObjectAlreadyExists, ObjectStore, StoreError, read_all
from clinical_pipelines.storage.base import ObjectInfo, ObjectNotFound
from clinical_pipelines.storage.envelope import DecryptingReader, DecryptionError, decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.storage.names import NameKey, load_name_key
from clinical_pipelines.zones import raw_drop_landing_state_key, raw_drop_record_key, raw_object_key


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


class _CheckedReader:
    """Plaintext of a raw object whose sha256 is checked once the last byte has been read.

    The envelope authenticates every chunk; this checks that the whole plaintext is the content the
    caller asked for (the address is a keyed hash, so the sha256 is re-checked here, not implied).
    """

    def __init__(self, inner: DecryptingReader, sha256: str) -> None:
        self._inner, self._sha256, self._hash, self._checked = inner, sha256, hashlib.sha256(), False

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._hash.update(data)
        if size is None or size < 0 or not data:
            self._check()
        return data

    def _check(self) -> None:
        if not self._checked and self._hash.hexdigest() != self._sha256:
            raise DecryptionError("raw object content does not match its sha256 (tampered or swapped object)")
        self._checked = True

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _CheckedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawZone:
    """The raw zone of one object store, encrypted under one key ring, addressed by keyed hashes."""

    def __init__(self, store: ObjectStore, keyring: KeyRing, names: NameKey | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self._names = names

    @property
    def names(self) -> NameKey:
        """The store's names secret (loaded, or created on first use, once per zone object)."""
        if self._names is None:
            self._names = load_name_key(self.store, self.keyring)
        return self._names

    def object_key(self, sha256: str) -> str:
        """The store key of the object with this plaintext sha256 (a keyed address)."""
        return raw_object_key(self.names.object_address(sha256))

    def has_object(self, sha256: str) -> bool:
        """True if the content with this sha256 is already stored."""
        return self.store.head(self.object_key(sha256)) is not None

    def open_object(self, sha256: str) -> _CheckedReader:
        """Stream an object's plaintext; authenticated chunk by chunk (bound to its key), sha256 checked at the end."""
        key = self.object_key(sha256)
        return _CheckedReader(DecryptingReader(self.store.open_read(key), self.keyring, context=key), sha256)

    def read_object(self, sha256: str) -> bytes:
        """An object's whole plaintext (for small objects), its sha256 checked."""
        with self.open_object(sha256) as reader:
            return reader.read()

    def read_prefix(self, sha256: str, size: int) -> bytes:
        """At least the first ``size`` plaintext bytes of an object (fewer only if it is shorter).

        Only the chunks covering them are read, authenticated and decrypted (so the whole-content
        sha256 is not checked here; a full read checks it).
        """
        key = self.object_key(sha256)
        with DecryptingReader(self.store.open_read(key), self.keyring, context=key) as reader:
            return reader.read(size)

    def put_small_object(self, data: bytes) -> str:
        """Store an in-memory value (drop.json, a validated table) content-addressed, once; returns its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has_object(digest):
            with contextlib.suppress(ObjectAlreadyExists):  # a concurrent run stored it first
                key = self.object_key(digest)
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

    def write_landing_state(self, source: str, drop_id: str, manifest: ObjectInfo) -> None:
        """Remember which drop.json (size, time, etag; no content) the drop was last ingested from."""
        state = {"size": manifest.size, "last_modified": manifest.last_modified, "etag": manifest.etag}
        self.store.put_bytes(raw_drop_landing_state_key(source, drop_id), json.dumps(state, sort_keys=True).encode())

    def landing_changed(self, source: str, drop_id: str) -> ObjectInfo | None:
        """The drop's drop.json if it differs from the one it was ingested from (a re-send), else None.

        Two small reads (a HEAD of drop.json, the state object); a drop never ingested counts as unchanged.
        """
        from clinical_pipelines.landing.manifest import DROP_MANIFEST
        from clinical_pipelines.zones import landing_drop_prefix

        try:
            current = self.store.head(landing_drop_prefix(source, drop_id) + DROP_MANIFEST)
        except StoreError:
            current = ObjectInfo("", -1, 0.0)
        if current is None:
            return None
        try:
            state = json.loads(read_all(self.store, raw_drop_landing_state_key(source, drop_id)))
        except ObjectNotFound:
            return None
        seen = (state.get("size"), state.get("last_modified"), state.get("etag"))
        return None if seen == (current.size, current.last_modified, current.etag) else current
