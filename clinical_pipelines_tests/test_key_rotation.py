"""Master-key rotation over real stores (local folder and moto's S3 server): every data key re-wrapped, the
sealed data byte for byte unchanged, every object readable before, during and after, resumable after a crash,
wrong or missing keys named, and the CLI behind a 'keys' grant with separation of duties, audited."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clinical_pipelines.catalog.audit import AuditLog
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.cli import main
from clinical_pipelines.storage.base import ObjectStore, read_all
from clinical_pipelines.storage.envelope import MAGIC, DecryptionError, decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyError_, KeyRing, add_local_key, local_keyring
from clinical_pipelines.storage.rotation import key_ids_in_use, rotate

OBJECTS = {f"raw/objects/hmac/ab/obj{i}": os.urandom(70_000 + i) for i in range(4)} | {
    "quarantine/site/d1/bad.dcm.enc": b"quarantined bytes" * 100,
    "raw/platform/names.secret.enc": os.urandom(32),
}
PLAIN = {"raw/drops/site/d1/landing.json": b'{"plain": true}'}


def _kid(blob: bytes) -> str:
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    return json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + length])["kid"]


def _sealed(blob: bytes) -> bytes:
    (length,) = struct.unpack(">I", blob[len(MAGIC) : len(MAGIC) + 4])
    return blob[len(MAGIC) + 4 + length :]


def _fill(store: ObjectStore, ring: KeyRing) -> None:
    for key, data in OBJECTS.items():
        store.put_bytes(key, encrypt_bytes(data, ring, context=key))
    for key, data in PLAIN.items():
        store.put_bytes(key, data)


def _all_readable(store: ObjectStore, ring: KeyRing) -> None:
    for key, data in OBJECTS.items():
        assert decrypt_bytes(read_all(store, key), ring, context=key) == data, key


def test_rotation_rewraps_every_data_key_and_leaves_the_data_alone(store: ObjectStore, tmp_path: Path) -> None:
    old_ring = local_keyring(tmp_path / "keys")
    _fill(store, old_ring)
    before = {k: read_all(store, k) for k in OBJECTS}
    new_id = add_local_key(tmp_path / "keys")
    ring = local_keyring(tmp_path / "keys")
    assert ring.current_id == new_id != old_ring.current_id and set(ring.keys) == {old_ring.current_id, new_id}
    report = rotate(store, ring)
    assert report.rewrapped == {old_ring.current_id: len(OBJECTS)} and report.plain == len(PLAIN)
    for key, blob in before.items():
        after = read_all(store, key)
        assert _kid(after) == new_id and _sealed(after) == _sealed(blob)  # the sealed chunks, byte for byte
    _all_readable(store, ring)
    _all_readable(store, old_ring)  # a process that loaded the ring before the rotation finds the new key
    assert read_all(store, "raw/drops/site/d1/landing.json") == PLAIN["raw/drops/site/d1/landing.json"]
    again = rotate(store, ring)
    assert again.total_rewrapped == 0 and again.current == len(OBJECTS)
    assert key_ids_in_use(store) == {new_id: len(OBJECTS)}


def test_a_rotation_killed_half_way_is_finished_by_the_next_pass(store: ObjectStore, tmp_path: Path) -> None:
    ring = local_keyring(tmp_path / "keys")
    _fill(store, ring)
    add_local_key(tmp_path / "keys")
    ring = local_keyring(tmp_path / "keys")
    seen: list[str] = []

    def crash_after_two(key: str) -> None:
        seen.append(key)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a kill between two objects

    with pytest.raises(KeyboardInterrupt):
        rotate(store, ring, progress=crash_after_two)
    counts = key_ids_in_use(store)
    assert sum(counts.values()) == len(OBJECTS) and len(counts) == 2  # half old, half new
    _all_readable(store, ring)  # readable throughout
    finish = rotate(store, ring)
    assert finish.total_rewrapped == len(OBJECTS) - counts[ring.current_id]
    assert key_ids_in_use(store) == {ring.current_id: len(OBJECTS)}
    _all_readable(store, ring)


def test_a_wrong_or_missing_old_key_is_named_never_garbage(local_store: ObjectStore, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ring = local_keyring(keys)
    _fill(local_store, ring)
    old_id = ring.current_id
    add_local_key(keys)
    wrong = json.dumps({"key_id": old_id, "key": base64.b64encode(os.urandom(32)).decode(), "alg": "AES-256"})
    (keys / f"{old_id}.key").write_text(wrong)
    with pytest.raises(DecryptionError, match=f"does not unwrap under master key '{old_id}'"):
        rotate(local_store, local_keyring(keys))
    (keys / f"{old_id}.key").unlink()
    with pytest.raises(KeyError_, match=f"master key '{old_id}' is not available"):
        rotate(local_store, local_keyring(keys))
    blob = read_all(local_store, next(iter(OBJECTS)))
    assert _kid(blob) == old_id  # nothing was rewritten with a key that does not fit


def test_cli_rotation_needs_the_keys_grant_and_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("CLINICAL_PIPELINES_")]:
        monkeypatch.delenv(name)
    keys, data = tmp_path / "keys", tmp_path / "data"
    monkeypatch.setenv("CLINICAL_PIPELINES_KEY_DIR", str(keys))
    from clinical_pipelines.storage.local import LocalObjectStore

    store = LocalObjectStore(data, fsync=False)
    _fill(store, local_keyring(keys))
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main, [*args, "--data-dir", str(data)], catch_exceptions=False)

    refused = cli("keys", "rotate")  # local-admin: every action but keys (separation of duties)
    assert refused.exit_code == 3 and "local-admin has no 'keys' grant on project *" in refused.stderr
    assert cli("access", "grant", "keykeeper", "--action", "keys").exit_code == 0
    rotated = cli("keys", "rotate", "--as", "keykeeper")
    assert rotated.exit_code == 0, rotated.output
    assert f"{len(OBJECTS)} object(s) re-wrapped" in rotated.stdout and f"{len(PLAIN)} not encrypted" in rotated.stdout
    status = json.loads(cli("keys", "status", "--json").stdout)
    assert status["objects_by_key"] == {status["current"]: len(OBJECTS)}
    _all_readable(store, local_keyring(keys))
    assert "0 object(s) re-wrapped" in cli("keys", "rotate", "--resume", "--as", "keykeeper").stdout
    catalog = Catalog.open(f"sqlite:///{data / 'catalog.sqlite'}")
    rows = [r for r in AuditLog(catalog.engine).rows() if r[3] == "keys.rotate"]
    catalog.close()
    assert [(r[2], r[4], r[6]) for r in rows] == [("local-admin", "keyring", "refused"),
                                                  ("keykeeper", "keyring", "allowed"),
                                                  ("keykeeper", "keyring", "allowed")]  # fmt: skip
    assert f"rewrapped={len(OBJECTS)}" in rows[1][7] and f"to={status['current']}" in rows[1][7]
    monkeypatch.setenv("CLINICAL_PIPELINES_ENV", "production")
    monkeypatch.setenv("CLINICAL_PIPELINES_MASTER_KEY", base64.b64encode(b"m" * 32).decode())
    monkeypatch.setenv("CLINICAL_PIPELINES_DEID_KEY", base64.b64encode(b"d" * 32).decode())
    production = cli("keys", "rotate", "--as", "keykeeper")
    assert production.exit_code == 2 and production.stderr.count("\n") == 1


def test_the_pipeline_keeps_working_across_a_rotation(tmp_path: Path) -> None:
    """Drops ingested before a rotation, the rotation, then more drops: every raw object decrypts and
    authenticates under the final ring, and all of them are under the new key once it is resumed."""
    import dagster as dg

    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.storage.envelope import DecryptingReader, authenticate
    from clinical_pipelines_tests.corpus import put_drops, small_corpus

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store = settings.open_store()
    drops, _ = small_corpus()
    put_drops(store, drops[:2])
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        first = process_landing(settings, instance)
        old_id = settings.keyring().current_id
        add_local_key(settings.key_dir)
        rotated = rotate(store, settings.keyring())
        put_drops(store, drops[2:])
        second = process_landing(settings, instance)
    assert first.drops and second.drops and all(d.success for d in first.drops + second.drops)
    assert rotated.rewrapped[old_id] > 0
    ring = settings.keyring()
    encrypted = 0
    for zone in ("raw", "quarantine"):
        for info in store.list(f"{zone}/"):
            blob = read_all(store, info.key)
            if blob.startswith(MAGIC):
                assert authenticate(DecryptingReader(io.BytesIO(blob), ring, context=info.key)) >= 0
                assert _kid(blob) == ring.current_id, info.key  # the later drops were written under the new key
                encrypted += 1
    assert encrypted > 10 and key_ids_in_use(store) == {ring.current_id: encrypted}


def test_production_rotation_takes_its_new_key_from_the_environment(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from clinical_pipelines.storage.keys import keyring_from_env
    from clinical_pipelines.storage.local import LocalObjectStore

    for name in [k for k in os.environ if k.startswith("CLINICAL_PIPELINES_")]:
        monkeypatch.delenv(name)
    old, new = os.urandom(32), os.urandom(32)
    b64 = lambda k: base64.b64encode(k).decode()  # noqa: E731
    data = tmp_path / "data"
    store = LocalObjectStore(data, fsync=False)
    base = {"CLINICAL_PIPELINES_ENV": "production", "CLINICAL_PIPELINES_DEID_KEY": b64(b"d" * 32),
            "CLINICAL_PIPELINES_KEY_DIR": str(tmp_path / "no-keys-here")}  # fmt: skip
    first = {**base, "CLINICAL_PIPELINES_MASTER_KEY": b64(old), "CLINICAL_PIPELINES_MASTER_KEY_ID": "kms-2025"}
    _fill(store, keyring_from_env(first))  # type: ignore[arg-type]
    for name, value in first.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(main, [*args, "--data-dir", str(data)], catch_exceptions=False)

    assert cli("access", "init", "--admin", "root").exit_code == 0
    assert cli("access", "grant", "keykeeper", "--action", "keys", "--as", "root").exit_code == 0
    monkeypatch.setenv("CLINICAL_PIPELINES_MASTER_KEY", b64(new))
    monkeypatch.setenv("CLINICAL_PIPELINES_MASTER_KEY_ID", "kms-2026")
    monkeypatch.setenv("CLINICAL_PIPELINES_RETIRED_MASTER_KEYS", f"kms-2025:{b64(old)}")
    fresh = cli("keys", "rotate", "--as", "keykeeper")  # production never makes a key
    assert fresh.exit_code == 2 and "then run keys rotate --resume" in fresh.stderr and fresh.stderr.count("\n") == 1
    rotated = cli("keys", "rotate", "--resume", "--as", "keykeeper")
    assert rotated.exit_code == 0, rotated.output
    assert f"{len(OBJECTS)} object(s) re-wrapped ({len(OBJECTS)} from kms-2025)" in rotated.stdout
    assert key_ids_in_use(store) == {"kms-2026": len(OBJECTS)}
    _all_readable(store, KeyRing({"kms-2026": new}, "kms-2026"))  # the retired key is no longer needed
    assert not (tmp_path / "no-keys-here").exists()
    monkeypatch.setenv("CLINICAL_PIPELINES_RETIRED_MASTER_KEYS", "kms-2025:not-base64")
    broken = cli("keys", "status")
    assert broken.exit_code == 2 and "CLINICAL_PIPELINES_RETIRED_MASTER_KEYS must be id:base64 pairs" in broken.stderr
