"""Ciphertexts are bound to their object key and zone (AES-GCM AAD); forged headers are bounded."""

from __future__ import annotations

import base64
import io
import json
import os
import struct

import pytest

from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.envelope import (
    MAGIC,
    MAX_CHUNK_SIZE,
    DecryptingReader,
    DecryptionError,
    LegacyEnvelope,
    TamperedObject,
    decrypt_bytes,
    encrypt_bytes,
)
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import raw_object_key


def test_swapped_raw_objects_fail_as_tampered(store: ObjectStore, keyring: KeyRing) -> None:
    raw = RawZone(store, keyring)
    a, b = os.urandom(3000), os.urandom(3000)
    sha_a, sha_b = raw.put_small_object(a), raw.put_small_object(b)
    assert raw.read_object(sha_a) == a
    blob_a, blob_b = read_all(store, raw_object_key(sha_a)), read_all(store, raw_object_key(sha_b))
    store.put_bytes(raw_object_key(sha_a), blob_b)  # someone with write access swaps two records
    store.put_bytes(raw_object_key(sha_b), blob_a)
    for sha in (sha_a, sha_b):
        with pytest.raises(TamperedObject, match="tampered_object"):
            raw.read_object(sha)


def test_context_binds_zone_and_key(keyring: KeyRing) -> None:
    blob = encrypt_bytes(b"phi", keyring, context="raw/objects/aa/1")
    assert decrypt_bytes(blob, keyring, context="raw/objects/aa/1") == b"phi"
    for other in ("raw/objects/aa/2", "quarantine/objects/aa/1", ""):
        with pytest.raises(TamperedObject) as err:
            decrypt_bytes(blob, keyring, context=other)
        assert err.value.reason == "tampered_object"


def _forge_header(blob: bytes, **changes: object) -> bytes:
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    header = json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    header.update(changes)
    new = json.dumps(header).encode()
    return MAGIC + struct.pack(">I", len(new)) + new + blob[len(MAGIC) + 4 + length :]


@pytest.mark.parametrize("chunk_size", [MAX_CHUNK_SIZE + 1, 2**40, 0, -1, "65536", 1.5, None])
def test_forged_chunk_size_is_refused_before_any_read(keyring: KeyRing, chunk_size: object) -> None:
    blob = _forge_header(encrypt_bytes(b"x" * 100, keyring), chunk_size=chunk_size)

    class Exploding(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            assert size is None or size <= MAX_CHUNK_SIZE + 16, "reader asked for an unbounded chunk"
            return super().read(size)

    with pytest.raises(DecryptionError, match=r"chunk_size|malformed"):
        DecryptingReader(Exploding(blob), keyring)


def test_forged_nonce_prefix_is_refused(keyring: KeyRing) -> None:
    blob = _forge_header(encrypt_bytes(b"x", keyring), nonce_prefix=base64.b64encode(b"12").decode())
    with pytest.raises(DecryptionError, match="nonce"):
        decrypt_bytes(blob, keyring)


def test_format_1_objects_are_refused_with_a_clear_message(keyring: KeyRing) -> None:
    legacy = b"CPENV1\n" + encrypt_bytes(b"old", keyring)[len(MAGIC) :]
    with pytest.raises(LegacyEnvelope, match=r"format 1.*re-ingest"):
        decrypt_bytes(legacy, keyring, context="raw/objects/aa/1")
