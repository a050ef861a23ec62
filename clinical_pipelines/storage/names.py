"""Keyed identifiers for source-controlled names and for raw-object addresses.

Source file and folder names carry PHI (``SMITH_JOHN_MRN1234567.dcm``) and have little entropy,
so a plain hash of one is a dictionary attack away from the name; a plain sha256 address of a
raw object confirms whether a known file was ingested. Every such identifier is therefore an
HMAC-SHA256 under the platform **names secret**:

- a name (landing folder prefix, a file's path in its drop, a quarantine item) → ``name_id``
  (24 hex, linkable for operators: the same name gives the same id in every record);
- a raw object's plaintext sha256 → its ``object_address`` (64 hex); the plaintext sha256 itself
  is kept only inside encrypted records and is re-checked on every full read.

The names secret is not the de-identification key and not a master key: 32 random bytes created
once per object store and kept in it at :data:`NAMES_SECRET_KEY`, envelope-encrypted under the
master key exactly like a data key (so only a holder of the master key can recompute an id, and a
master-key rotation re-wraps it like every other envelope instead of changing every address).
Creation is write-once, so concurrent first users agree on one secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from clinical_pipelines.storage.base import ObjectAlreadyExists, ObjectNotFound, ObjectStore, StoreError, read_all
from clinical_pipelines.storage.envelope import decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing

NAMES_SECRET_KEY = "raw/platform/names.secret.enc"
# Where the unkeyed layout (before keyed addresses) kept raw objects: such a store is refused.
LEGACY_RAW_OBJECTS = "raw/objects/sha256/"
SECRET_BYTES = 32
NAME_ID_HEX = 24


class LegacyLayoutError(StoreError):
    """The store holds data in the old, unkeyed layout (raw objects addressed by plain sha256)."""


@dataclass(frozen=True)
class NameKey:
    """HMAC-SHA256 identifiers under one store's names secret."""

    secret: bytes = field(repr=False)

    def _mac(self, domain: bytes, value: bytes) -> str:
        return hmac.new(self.secret, domain + b"\0" + value, hashlib.sha256).hexdigest()

    def name_id(self, name: str) -> str:
        """24 hex identifying a source-controlled name (any str, including surrogate-escaped bytes)."""
        return self._mac(b"name", name.encode("utf-8", "surrogateescape"))[:NAME_ID_HEX]

    def object_address(self, sha256: str) -> str:
        """64 hex: where the raw object with this plaintext sha256 lives."""
        return self._mac(b"raw-object", sha256.encode("ascii"))


def load_name_key(store: ObjectStore, keyring: KeyRing, *, create: bool = True) -> NameKey:
    """The store's names secret, created on first use (refused over a store in the old layout).

    Raises :class:`LegacyLayoutError` when no secret exists yet but the store already holds raw
    objects under the old unkeyed layout: mixing the two would orphan every old object.
    """
    try:
        return NameKey(decrypt_bytes(read_all(store, NAMES_SECRET_KEY), keyring, context=NAMES_SECRET_KEY))
    except ObjectNotFound:
        if not create:
            raise
    if next(iter(store.list(LEGACY_RAW_OBJECTS)), None) is not None:
        raise LegacyLayoutError(
            f"the object store {store.url} holds raw objects in the old unkeyed layout ({LEGACY_RAW_OBJECTS}); "
            "this version addresses raw objects by keyed hash: re-ingest its drops into a new data folder "
            "(CLINICAL_PIPELINES_DATA_DIR / CLINICAL_PIPELINES_STORE_URL) or remove its raw/ and quarantine/ zones"
        )
    with contextlib.suppress(ObjectAlreadyExists):  # a concurrent first user created it first: use theirs
        wrapped = encrypt_bytes(secrets.token_bytes(SECRET_BYTES), keyring, context=NAMES_SECRET_KEY)
        store.put_bytes(NAMES_SECRET_KEY, wrapped, write_once=True)
    return NameKey(decrypt_bytes(read_all(store, NAMES_SECRET_KEY), keyring, context=NAMES_SECRET_KEY))
