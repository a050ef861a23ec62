"""Signed FHIR AuditEvent exports of the audit log (SQLite and the machine's PostgreSQL, a real object store):
every line validated by an independent FHIR library, the chain recomputed from the files alone, tampering of
every kind found, broken chains never signed, crash-resumable, and the CLI and Dagster job end to end."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import text

from clinical_pipelines.catalog.audit import AuditEntry, AuditLog
from clinical_pipelines.catalog.audit_export import (
    ENV_AUDIT_SIGNING_KEY,
    EXPORT_PREFIX,
    AuditExportError,
    SigningKeyError,
    export_audit,
    fields_of,
    head_documents,
    load_signing_key,
    public_pem,
    verify_export,
)
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.cli import main
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines_tests.test_catalog import db_url  # noqa: F401  (fixture)

ENTRIES = [
    AuditEntry("local-admin", "read.show", f"version:{'a' * 64}", "allowed", "qa", "results=1 hidden=0"),
    AuditEntry("mallory", "read.verify", f"version:{'b' * 64}", "refused", None, "missing read project=x tag=*"),
    AuditEntry("alice", "reproduce.reproduce", f"version:{'c' * 64}", "failed", "training", "error=OSError"),
    AuditEntry("system", "grant.bootstrap", "principal:local-admin", "allowed"),
    AuditEntry("local-admin", "grant.revoke", "principal:bob", "allowed", None, "read project=* tag=* removed=1"),
]


@pytest.fixture
def log(db_url: str, tmp_path: Path) -> Iterator[tuple[Catalog, LocalObjectStore]]:  # noqa: F811
    catalog = Catalog.open(db_url)
    AuditLog(catalog.engine).append_many(ENTRIES)
    yield catalog, LocalObjectStore(tmp_path / "data", fsync=False)
    catalog.close()


def _pairs(store: LocalObjectStore, heads: list[str]) -> list[tuple[bytes, io.BytesIO]]:
    return [(read_all(store, h), io.BytesIO(read_all(store, h.removesuffix(".head.json") + ".ndjson"))) for h in heads]


def test_an_export_carries_every_record_as_a_valid_fhir_audit_event(log: tuple[Catalog, LocalObjectStore]) -> None:
    catalog, store = log
    key = Ed25519PrivateKey.generate()
    report = export_audit(catalog.engine, store, key)
    assert report.records == 5 and report.heads == [f"{EXPORT_PREFIX}000000000001-000000000005.head.json"]
    lines = read_all(store, f"{EXPORT_PREFIX}000000000001-000000000005.ndjson").splitlines()
    rows = list(AuditLog(catalog.engine).rows())
    assert [fields_of(json.loads(line)) for line in lines] == [tuple(r) for r in rows]  # the chain travels whole
    for line in lines:  # an independent FHIR implementation accepts every resource
        event = AuditEvent.model_validate_json(line)
        assert event.type.code == "110100" and event.recorded is not None
    outcomes = [json.loads(line)["outcome"] for line in lines]
    assert outcomes == ["0", "4", "8", "0", "0"]
    result = verify_export(_pairs(store, report.heads), key.public_key())
    assert result.ok and result.records == 5 and (result.head_seq, result.head_hash) == AuditLog(catalog.engine).head()
    wrong = verify_export(_pairs(store, report.heads), Ed25519PrivateKey.generate().public_key())
    assert not wrong.ok and "signature does not verify" in (wrong.problem or "")


def test_exports_are_incremental_split_and_join_up(log: tuple[Catalog, LocalObjectStore]) -> None:
    catalog, store = log
    key = Ed25519PrivateKey.generate()
    first = export_audit(catalog.engine, store, key)
    assert export_audit(catalog.engine, store, key).heads == []  # nothing new: nothing written
    AuditLog(catalog.engine).append_many([AuditEntry("alice", "read.show", f"version:{'d' * 64}", "allowed")] * 12)
    later = export_audit(catalog.engine, store, key, max_records=5)
    assert [h.rsplit("/", 1)[1] for h in later.heads] == [
        "000000000006-000000000010.head.json", "000000000011-000000000015.head.json",
        "000000000016-000000000017.head.json",
    ]  # fmt: skip
    every = first.heads + later.heads
    assert [h for h in (f"{EXPORT_PREFIX}{d['ndjson'].removesuffix('.ndjson')}.head.json"
                        for d in head_documents(store))] == every  # fmt: skip
    joined = verify_export(list(reversed(_pairs(store, every))), key.public_key())  # any order
    assert joined.ok and joined.records == 17 and joined.head_seq == 17
    gap = verify_export(_pairs(store, [every[0], every[2]]), key.public_key())
    assert not gap.ok and "does not continue the export before it" in (gap.problem or "")


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap", "truncate", "extend", "head"])
def test_tampering_with_an_exported_file_is_found(log: tuple[Catalog, LocalObjectStore], tamper: str) -> None:
    catalog, store = log
    key = Ed25519PrivateKey.generate()
    [head] = export_audit(catalog.engine, store, key).heads
    raw_head = read_all(store, head)
    lines = read_all(store, head.removesuffix(".head.json") + ".ndjson").splitlines(keepends=True)
    if tamper == "edit":
        lines[1] = lines[1].replace(b"mallory", b"alice")
    elif tamper == "delete":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "truncate":
        lines = lines[:-1]
    elif tamper == "extend":
        lines.append(lines[-1])
    else:
        doc = json.loads(raw_head)
        doc["head_seq"] = 4
        raw_head = json.dumps(doc).encode()
    result = verify_export([(raw_head, io.BytesIO(b"".join(lines)))], key.public_key())
    assert not result.ok and result.problem


def test_a_broken_chain_is_never_signed(log: tuple[Catalog, LocalObjectStore]) -> None:
    catalog, store = log
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET principal = 'someone-else' WHERE seq = 3"))
    with pytest.raises(AuditExportError, match="record 3 breaks the chain"):
        export_audit(catalog.engine, store, Ed25519PrivateKey.generate())
    assert list(store.list(EXPORT_PREFIX)) == []


def test_a_crash_between_file_and_head_is_finished_by_the_next_run(log: tuple[Catalog, LocalObjectStore]) -> None:
    catalog, store = log
    key = Ed25519PrivateKey.generate()
    [head] = export_audit(catalog.engine, store, key).heads
    signed = read_all(store, head)
    store.delete(head)  # as if killed after the NDJSON and before its head
    assert export_audit(catalog.engine, store, key).heads == [head]
    assert read_all(store, head) == signed  # same records, same bytes, same (deterministic) signature


def test_the_signing_key_lives_with_the_master_keys_and_production_never_generates_one(tmp_path: Path) -> None:
    key = load_signing_key(tmp_path / "keys", {})
    again = load_signing_key(tmp_path / "keys", {})
    assert public_pem(key.public_key()) == public_pem(again.public_key())
    assert (tmp_path / "keys" / "audit-signing.ed25519").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SigningKeyError, match=f"{ENV_AUDIT_SIGNING_KEY} from your secret manager"):
        load_signing_key(tmp_path / "other", {}, production=True)
    assert not (tmp_path / "other").exists()
    configured = base64.b64encode(b"\x01" * 32).decode()
    assert load_signing_key(tmp_path / "other", {ENV_AUDIT_SIGNING_KEY: configured}, production=True)
    with pytest.raises(SigningKeyError, match="base64 of a 32-byte Ed25519 private key"):
        load_signing_key(tmp_path / "other", {ENV_AUDIT_SIGNING_KEY: "c2hvcnQ="}, production=True)


def test_cli_export_and_an_auditors_check_without_the_database(tmp_path: Path, key_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    for name in [k for k in os.environ if k.startswith("CLINICAL_PIPELINES_") and k != "CLINICAL_PIPELINES_KEY_DIR"]:
        monkeypatch.delenv(name)
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(main, ["access", "list", "--data-dir", str(data)]).exit_code == 0  # bootstrap: 1 record
    exported = runner.invoke(main, ["audit", "export", "--data-dir", str(data)])
    assert exported.exit_code == 0 and "exported 1 record(s); signed head 1:" in exported.stdout, exported.output
    pem = tmp_path / "auditor.pem"
    pem.write_text(runner.invoke(main, ["audit", "public-key", "--data-dir", str(data)]).stdout)
    # The auditor has the files and the public key, not the database.
    files = tmp_path / "auditor"
    files.mkdir()
    for path in (data / "archive" / "audit").iterdir():
        (files / path.name).write_bytes(path.read_bytes())
    (data / "catalog.sqlite").unlink()
    heads = sorted(str(p) for p in files.glob("*.head.json"))
    checked = runner.invoke(main, ["audit", "verify-export", *heads, "--public-key", str(pem)])
    assert checked.exit_code == 0 and "export intact: 1 record(s)" in checked.stdout, checked.output
    ndjson = next(files.glob("*.ndjson"))
    ndjson.write_bytes(ndjson.read_bytes().replace(b"local-admin", b"local-admim"))
    broken = runner.invoke(main, ["audit", "verify-export", *heads, "--public-key", str(pem)])
    assert broken.exit_code == 1 and "export broken: " in broken.stderr
    monkeypatch.setenv("CLINICAL_PIPELINES_ENV", "production")
    monkeypatch.setenv("CLINICAL_PIPELINES_MASTER_KEY", base64.b64encode(b"m" * 32).decode())
    monkeypatch.setenv("CLINICAL_PIPELINES_DEID_KEY", base64.b64encode(b"d" * 32).decode())
    refused = runner.invoke(main, ["audit", "export", "--data-dir", str(data)])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and ENV_AUDIT_SIGNING_KEY in refused.stderr


def test_the_audit_export_job_through_dagster(tmp_path: Path) -> None:
    from clinical_pipelines.definitions import build_definitions

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    catalog = Catalog.open(settings.catalog_url)
    AuditLog(catalog.engine).append_many(ENTRIES)
    catalog.close()
    defs = build_definitions(settings)
    schedule = next(s for s in defs.get_repository_def().schedule_defs if s.name == "audit_export_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == "audit_export"
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert defs.resolve_job_def("audit_export").execute_in_process(instance=instance).success
        event = instance.get_latest_materialization_event(dg.AssetKey(["governance", "audit_export"]))
        assert event is not None and event.asset_materialization is not None
        meta = event.asset_materialization.metadata
    assert meta["records"].value == 5 and str(meta["head"].value).startswith("5:")
    store = settings.open_store()
    key = load_signing_key(settings.key_dir, {})
    assert verify_export(_pairs(store, list(meta["heads_written"].value)), key.public_key()).ok  # type: ignore[arg-type]
