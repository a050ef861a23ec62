"""The audit log: hash-chained records in the catalog database. Each kind of tampering is named at the first
record it touched, concurrent writers (two processes; SQLite and PostgreSQL) never fork the chain, free text
has nowhere to go, and ``clinical-pipelines audit verify`` says all of it in one line."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from clinical_pipelines.catalog.audit import GENESIS, AuditEntry, AuditError, AuditLog, record_hash
from clinical_pipelines.catalog.repository import Catalog


def _log(url: str) -> AuditLog:
    return AuditLog(Catalog.open(url).engine)


def _entries(n: int, who: str = "alice") -> list[AuditEntry]:
    return [AuditEntry(who, "read", f"chest_ct@{i % 7}", "allowed" if i % 5 else "refused",
                       purpose="model-training", detail=None if i % 5 else "missing grant read:chest_ct:phi")
            for i in range(n)]  # fmt: skip


def _filled(tmp_path: Path, n: int = 100) -> tuple[str, AuditLog]:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    log = _log(url)
    entries = _entries(n)
    for start in range(0, n, 30):
        log.append_many(entries[start : start + 30])
    return url, log


def test_records_chain_by_sha256_of_their_canonical_encoding(tmp_path: Path) -> None:
    _, log = _filled(tmp_path, 100)
    rows = list(log.rows(batch=7))
    assert [r[0] for r in rows] == list(range(1, 101))
    prev = GENESIS
    for seq, at, principal, action, target, purpose, outcome, detail, prev_hash, stored in rows:
        encoded = json.dumps([1, seq, at, principal, action, target, purpose, outcome, detail, prev],
                             ensure_ascii=False, separators=(",", ":")).encode()  # fmt: skip
        assert prev_hash == prev and stored == hashlib.sha256(encoded).hexdigest()
        prev = stored
    result = log.verify()
    assert result.intact and result.records == 100 and (result.head_seq, result.head_hash) == log.head() == (100, prev)
    assert [r.seq for r in log.for_target("chest_ct@3", limit=3)] == [95, 88, 81]  # seq i + 1 targets @ i % 7


@pytest.fixture(params=[1, 2], ids=["one walk", "two workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """Verify walks the log in one pass, or in two worker processes whose parts meet at record 50 or 51."""
    return int(request.param)


def _execute(log: AuditLog, *statements: tuple[str, dict[str, object]]) -> None:
    with log.engine.begin() as conn:
        for sql, params in statements:
            conn.execute(text(sql), params)


def test_an_edited_record_is_named(tmp_path: Path, workers: int) -> None:
    _, log = _filled(tmp_path)
    _execute(log, ("UPDATE audit_log SET principal = 'mallory' WHERE seq = 50", {}))
    result = log.verify(workers=workers)
    assert (result.broken_at, result.problem, result.records) == (50, "edited", 49)


def test_a_deleted_record_is_named(tmp_path: Path, workers: int) -> None:
    _, log = _filled(tmp_path)
    _execute(log, ("DELETE FROM audit_log WHERE seq = 50", {}))
    result = log.verify(workers=workers)
    assert (result.broken_at, result.problem) == (50, "deleted")


def test_a_deleted_and_renumbered_record_is_named(tmp_path: Path, workers: int) -> None:
    _, log = _filled(tmp_path)
    _execute(log, ("DELETE FROM audit_log WHERE seq = 50", {}))
    for seq in range(51, 101):
        _execute(log, ("UPDATE audit_log SET seq = :new WHERE seq = :old", {"new": seq - 1, "old": seq}))
    result = log.verify(workers=workers)
    assert (result.broken_at, result.problem) == (50, "deleted or reordered")


def test_an_inserted_record_with_a_valid_hash_is_named(tmp_path: Path, workers: int) -> None:
    _, log = _filled(tmp_path)
    for seq in range(100, 49, -1):  # make room at 50, as a forger must (sequence numbers are the key)
        _execute(log, ("UPDATE audit_log SET seq = :new WHERE seq = :old", {"new": seq + 1, "old": seq}))
    with log.engine.connect() as conn:
        at, prev = conn.execute(text("SELECT at, record_hash FROM audit_log WHERE seq = 49")).one()
    forged = record_hash(50, at, "mallory", "export", "chest_ct@1", None, "allowed", None, prev)
    _execute(log, ("INSERT INTO audit_log VALUES (50, :at, 'mallory', 'export', 'chest_ct@1', NULL, 'allowed', NULL, "
                   ":prev, :h)", {"at": at, "prev": prev, "h": forged}))  # fmt: skip
    result = log.verify(workers=workers)
    assert (result.broken_at, result.problem, result.records) == (50, "inserted", 49)


def test_reordered_records_are_named(tmp_path: Path, workers: int) -> None:
    _, log = _filled(tmp_path)
    _execute(log, ("UPDATE audit_log SET seq = -1 WHERE seq = 50", {}),
             ("UPDATE audit_log SET seq = 50 WHERE seq = 51", {}),
             ("UPDATE audit_log SET seq = 51 WHERE seq = -1", {}))  # fmt: skip
    result = log.verify(workers=workers)
    assert (result.broken_at, result.problem) == (50, "deleted or reordered")


def test_a_cut_off_end_shows_only_against_a_head_recorded_before(tmp_path: Path) -> None:
    _, log = _filled(tmp_path)
    head = log.head()
    _execute(log, ("DELETE FROM audit_log WHERE seq > 97", {}))
    assert log.verify().intact  # a shorter chain is a valid chain
    result = log.verify(expected_head=head)
    assert (result.broken_at, result.problem, result.records) == (98, "truncated", 97)
    assert log.verify(expected_head=log.head()).intact
    assert log.verify(expected_head=(97, "f" * 64)).problem == "edited"


def test_free_text_has_nowhere_to_go_and_nothing_half_written(tmp_path: Path) -> None:
    _, log = _filled(tmp_path, 10)
    for bad in (AuditEntry("alice", "read", "chest ct for John Smith", "allowed"),
                AuditEntry("alice\nroot", "read", "chest_ct@1", "allowed"),
                AuditEntry("alice", "READ", "chest_ct@1", "allowed"),
                AuditEntry("alice", "read", "chest_ct@1", "maybe"),
                AuditEntry("alice", "read", "chest_ct@1", "allowed", detail="note: patient said\n...")):  # fmt: skip
        with pytest.raises(AuditError):
            log.append_many([AuditEntry("bob", "read", "x@1", "allowed"), bad])
    assert log.head()[0] == 10 and log.verify().intact


def _writer(url: str, who: str, count: int) -> None:
    log = AuditLog(Catalog.open(url).engine)
    entries = _entries(count, who)
    i = 0
    while i < count:
        size = 1 + i % 4
        log.append_many(entries[i : i + size])
        i += size


def _race(url: str) -> AuditLog:
    log = _log(url)  # migrated once, before the writers
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(url, who, 200)) for who in ("alice", "bob")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(300)
    assert [w.exitcode for w in writers] == [0, 0]
    return log


def test_two_processes_appending_at_once_never_fork_the_chain_sqlite(tmp_path: Path) -> None:
    log = _race(f"sqlite:///{tmp_path / 'catalog.db'}")
    result = log.verify()
    assert result.intact and result.records == 400
    principals = [r[2] for r in log.rows()]
    assert principals.count("alice") == principals.count("bob") == 200


def test_two_processes_appending_at_once_never_fork_the_chain_postgresql(pg_url: str) -> None:
    log = _race(pg_url)
    result = log.verify()
    assert result.intact and result.records == 400
    assert log.verify(workers=2) == result  # two server-side cursors, one per worker, give one walk's answer


def test_an_untouched_log_of_100000_records_verifies(tmp_path: Path) -> None:
    log = _log(f"sqlite:///{tmp_path / 'catalog.db'}")
    entries = _entries(10_000)
    for _ in range(10):
        log.append_many(entries)
    one, two = log.verify(workers=1), log.verify(workers=2)
    assert one.intact and one.records == 100_000 and one.head_hash == log.head()[1]
    assert two == one


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLINICAL_PIPELINES_CATALOG_URL": url}
    return subprocess.run([sys.executable, "-m", "clinical_pipelines.cli", "audit", "verify", *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_the_cli_prints_the_head_and_names_the_first_break(tmp_path: Path) -> None:
    url, log = _filled(tmp_path)
    seq, digest = log.head()
    ok = _cli(url)
    assert ok.returncode == 0 and f"100 record(s), head {seq}:{digest}" in ok.stdout
    _execute(log, ("DELETE FROM audit_log WHERE seq > 98", {}))
    cut = _cli(url, "--head", f"{seq}:{digest}")
    assert cut.returncode == 1 and "broken at record 99 (truncated)" in cut.stderr
    _execute(log, ("UPDATE audit_log SET action = 'export' WHERE seq = 7", {}))
    broken = _cli(url)
    assert broken.returncode == 1 and "broken at record 7 (edited)" in broken.stderr
    assert "Traceback" not in broken.stderr
    bad = _cli(url, "--head", "not-a-head")
    assert bad.returncode == 2 and "SEQ:SHA256" in bad.stderr


@pytest.mark.parametrize("seq", [1, 50, 51, 100])
def test_a_break_at_either_end_of_a_part_is_named_alike(tmp_path: Path, seq: int) -> None:
    _, log = _filled(tmp_path)
    _execute(log, ("UPDATE audit_log SET outcome = 'allowed', purpose = 'x' WHERE seq = :s", {"s": seq}))
    assert log.verify(workers=1) == log.verify(workers=2)
    assert (log.verify(workers=2).broken_at, log.verify(workers=2).problem) == (seq, "edited")
    _execute(log, ("DELETE FROM audit_log WHERE seq = :s", {"s": seq}))
    one, two = log.verify(workers=1), log.verify(workers=2)
    assert one == two
    assert (one.broken_at, one.problem) == ((seq, "deleted") if seq < 100 else (None, None))  # the end: shorter
