"""Envelope encryption and master keys."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clinical_pipelines.settings import Settings, SettingsError
from clinical_pipelines.storage.envelope import (
    BLOCK_BYTES,
    CHUNK_SIZE,
    TAG_SIZE,
    DecryptingReader,
    DecryptionError,
    EncryptingReader,
    decrypt_bytes,
    encrypt_bytes,
)
from clinical_pipelines.storage.keys import KeyError_, KeyRing, load_keyring, local_keyring


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 7])
def test_roundtrip_every_chunk_boundary(keyring: KeyRing, size: int) -> None:
    data = os.urandom(size)
    blob = encrypt_bytes(data, keyring)
    assert decrypt_bytes(blob, keyring) == data
    if size >= 16:
        assert data[:16] not in blob  # no plaintext shows through


def test_streaming_reads_in_small_pieces(keyring: KeyRing) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    encrypting = EncryptingReader(io.BytesIO(data), keyring)
    blob = b"".join(iter(lambda: encrypting.read(4097), b""))
    reader = DecryptingReader(io.BytesIO(blob), keyring)
    assert b"".join(iter(lambda: reader.read(1000), b"")) == data


def _chunk_by_chunk(blob: bytes, keyring: KeyRing, size: int) -> bytes:
    """Plaintext opened the way format 2 is defined: one sealed chunk at a time (nonce = prefix, index, last)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from clinical_pipelines.storage.envelope import MAGIC, _nonce, object_context

    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    header = json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    kid = header["kid"]
    dek = AESGCM(keyring.get(kid)).decrypt(
        base64.b64decode(header["wrap_nonce"]), base64.b64decode(header["wrapped_dek"]), kid.encode()
    )
    body, sealed = blob[len(MAGIC) + 4 + length :], CHUNK_SIZE + TAG_SIZE
    prefix, aead, context = base64.b64decode(header["nonce_prefix"]), AESGCM(dek), object_context("raw/x")
    count = max(1, -(-len(body) // sealed))
    assert len(body) == size + count * TAG_SIZE
    pieces = [body[i * sealed : (i + 1) * sealed] for i in range(count)]
    return b"".join(aead.decrypt(_nonce(prefix, i, i == count - 1), c, context) for i, c in enumerate(pieces))


@pytest.mark.parametrize(
    "size", [BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 2 * BLOCK_BYTES, 2 * BLOCK_BYTES + CHUNK_SIZE + 3]
)
def test_block_reads_keep_the_chunk_layout(keyring: KeyRing, size: int) -> None:
    """Sealing and opening a block of chunks per read writes and reads exactly the per-chunk format."""
    data = os.urandom(size)
    blob = EncryptingReader(io.BytesIO(data), keyring, context="raw/x").read()
    assert _chunk_by_chunk(blob, keyring, size) == data
    whole = DecryptingReader(io.BytesIO(blob), keyring, context="raw/x")
    assert whole.read() == data
    mixed = DecryptingReader(io.BytesIO(blob), keyring, context="raw/x")  # small, then block-sized, then rest
    parts = [mixed.read(100), mixed.read(BLOCK_BYTES), mixed.read(7), mixed.read()]
    assert b"".join(parts) == data
    streamed = EncryptingReader(io.BytesIO(data), keyring, context="raw/x")  # as the stores pull it
    pulled = b"".join(bytes(b) for b in iter(lambda: streamed.read(8 << 20), b""))
    assert len(pulled) == len(blob) and _chunk_by_chunk(pulled, keyring, size) == data
    sealed = CHUNK_SIZE + TAG_SIZE
    header = len(blob) - (size + max(1, -(-size // CHUNK_SIZE)) * TAG_SIZE)
    for cut in (header + (BLOCK_BYTES // CHUNK_SIZE) * sealed, len(blob) - 1, header + sealed):
        if cut >= len(blob):
            continue
        with pytest.raises(DecryptionError):  # cut at a block or chunk boundary, or inside the last chunk
            DecryptingReader(io.BytesIO(blob[:cut]), keyring, context="raw/x").read()


def test_tampering_truncation_and_reordering_are_detected(keyring: KeyRing) -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    blob = encrypt_bytes(data, keyring)
    header = len(blob) - 3 * (CHUNK_SIZE + 16)
    sealed = CHUNK_SIZE + 16
    flipped = bytearray(blob)
    flipped[header + 10] ^= 1
    chunks = [blob[header + i * sealed : header + (i + 1) * sealed] for i in range(3)]
    for bad in (
        bytes(flipped),
        blob[:-1],  # truncated inside the last chunk
        blob[: header + 2 * sealed],  # a whole final chunk dropped
        blob[:header] + chunks[1] + chunks[0] + chunks[2],  # reordered
    ):
        with pytest.raises(DecryptionError):
            decrypt_bytes(bad, keyring)
    with pytest.raises(DecryptionError):
        decrypt_bytes(b"plain text, not an envelope", keyring)


def test_wrong_master_key_is_refused(keyring: KeyRing) -> None:
    blob = encrypt_bytes(b"secret", keyring)
    other = KeyRing({keyring.current_id: os.urandom(32)}, keyring.current_id)
    with pytest.raises(DecryptionError, match="unwrap"):
        decrypt_bytes(blob, other)
    with pytest.raises(KeyError_):
        decrypt_bytes(blob, KeyRing({"someone-else": os.urandom(32)}, "someone-else"))


def test_local_key_folder_is_private_created_once_and_race_free(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: local_keyring(key_dir), range(16)))
    assert len({r.current() for r in rings}) == 1
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    key_files = list(key_dir.glob("*.key"))
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert local_keyring(key_dir).current() == rings[0].current()  # read back, not regenerated
    key_files[0].chmod(0o644)
    with pytest.raises(KeyError_, match="readable by others"):
        local_keyring(key_dir)


def test_environment_key_wins_and_is_validated(tmp_path: Path) -> None:
    key = os.urandom(32)
    env = {"CLINICAL_PIPELINES_MASTER_KEY": base64.b64encode(key).decode(), "CLINICAL_PIPELINES_MASTER_KEY_ID": "kms-1"}
    ring = load_keyring(tmp_path / "unused", env)
    assert ring.current() == ("kms-1", key)
    assert not (tmp_path / "unused").exists()
    with pytest.raises(KeyError_, match="32 bytes"):
        load_keyring(tmp_path, {"CLINICAL_PIPELINES_MASTER_KEY": base64.b64encode(b"short").decode()})


def test_settings_refuse_keys_inside_the_data_folder_and_production_without_a_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="outside the data folder"):
        Settings.from_env({}, data_dir=tmp_path, key_dir=tmp_path / "keys")
    with pytest.raises(SettingsError, match="production needs"):
        Settings.from_env({"CLINICAL_PIPELINES_ENV": "production"}, data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    ok = Settings.from_env({}, data_dir=tmp_path / "d", key_dir=tmp_path / "k")
    assert ok.store_url == str(tmp_path / "d")


def test_key_folder_symlinked_into_the_data_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "keys").mkdir(parents=True)
    link = tmp_path / "innocent-looking-keys"
    link.symlink_to(data / "keys")
    with pytest.raises(SettingsError, match="outside the data folder"):
        Settings.from_env({}, data_dir=data, key_dir=link)
    with pytest.raises(SettingsError, match="outside the data folder"):  # a `..` path that lands inside
        Settings.from_env({}, data_dir=data, key_dir=tmp_path / "elsewhere" / ".." / "d" / "k")


def test_production_never_generates_a_master_key(tmp_path: Path) -> None:
    with pytest.raises(KeyError_, match="CLINICAL_PIPELINES_MASTER_KEY is not set"):
        load_keyring(tmp_path / "keys", {"CLINICAL_PIPELINES_ENV": "production"})
    with pytest.raises(KeyError_, match="CLINICAL_PIPELINES_MASTER_KEY is not set"):
        load_keyring(tmp_path / "keys", {}, production=True)
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize("damage", ["not json", "directory", "bad base64", "short key", "current is a folder"])
def test_unreadable_key_files_name_the_file_and_the_fix(tmp_path: Path, damage: str) -> None:
    key_dir = tmp_path / "keys"
    ring = local_keyring(key_dir)
    key_file = key_dir / f"{ring.current_id}.key"
    record = {"key_id": ring.current_id, "key": base64.b64encode(ring.current()[1]).decode()}
    if damage == "not json":
        key_file.write_text("{{{ not json")
    elif damage == "directory":
        key_file.unlink()
        key_file.mkdir()
    elif damage == "bad base64":
        key_file.write_text(json.dumps({**record, "key": "!!!"}))
    elif damage == "short key":
        key_file.write_text(json.dumps({**record, "key": base64.b64encode(b"short").decode()}))
    else:
        (key_dir / "current").unlink()
        (key_dir / "current").mkdir()
    with pytest.raises(KeyError_) as err:
        local_keyring(key_dir)
    message = str(err.value)
    assert str(key_dir) in message and ("restore" in message or "chmod" in message)
    assert "\n" not in message and record["key"] not in message
