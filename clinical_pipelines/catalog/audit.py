"""The audit log: an append-only, hash-chained table in the catalog database (SQLite or PostgreSQL).

Each record says who (a principal), did what (an action), to which object or version (a target), why (a
purpose), with what outcome (``allowed``, ``refused``, ``failed``) and when. Its ``record_hash`` is the
SHA-256 of a canonical encoding of all of that plus its sequence number and ``prev_hash``, the hash of
the record before it (:data:`GENESIS` for the first). Editing a record changes its hash; deleting one
leaves a gap in the sequence; inserting or reordering records changes their sequence numbers or breaks a
link: :meth:`AuditLog.verify` walks the chain and names the first record where any of that happened.
Removing records from the end leaves a shorter, valid chain; only a head recorded elsewhere (a signed
export) can show that, so :meth:`AuditLog.verify` takes one.

Writers are serialised, so two processes never fork the chain: on SQLite every catalog transaction
starts with ``BEGIN IMMEDIATE`` (:func:`clinical_pipelines.catalog.db.make_engine`), on PostgreSQL an
append holds a transaction-level advisory lock. Fields are checked against narrow alphabets (ids,
hashes, words) so that free text, which could carry PHI, has no place to go.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, text

from clinical_pipelines.catalog.models import AuditRecord

GENESIS = "0" * 64
OUTCOMES = ("allowed", "refused", "failed")
ENCODING_VERSION = 1
_PG_LOCK = 0x6175_6474  # "audt"
_FIELDS = ("seq", "at", "principal", "action", "target", "purpose", "outcome", "detail", "prev_hash", "record_hash")
_PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,199}")
_ACTION = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_TARGET = re.compile(r"[A-Za-z0-9._@:/+=#-]{1,300}")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: json.dumps builds one per call
_WORDS = re.compile(r"[A-Za-z0-9 ._:/()=,+#@*-]{0,500}")


class AuditError(ValueError):
    """An audit entry that cannot be recorded (a field outside its alphabet); the message names the field."""


@dataclass(frozen=True)
class AuditEntry:
    """What one record says; ``purpose`` and ``detail`` are short words (a purpose code, a missing grant)."""

    principal: str
    action: str
    target: str
    outcome: str
    purpose: str | None = None
    detail: str | None = None

    def checked(self) -> AuditEntry:
        """This entry, if every field is inside its alphabet; else :class:`AuditError` naming the field."""
        for name, pattern, value in (
            ("principal", _PRINCIPAL, self.principal),
            ("action", _ACTION, self.action),
            ("target", _TARGET, self.target),
        ):
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise AuditError(f"audit {name} must match {pattern.pattern}")
        if self.outcome not in OUTCOMES:
            raise AuditError(f"audit outcome must be one of {', '.join(OUTCOMES)}")
        for name, value in (("purpose", self.purpose), ("detail", self.detail)):
            if value is not None and not (isinstance(value, str) and _WORDS.fullmatch(value)):
                raise AuditError(f"audit {name} must match {_WORDS.pattern}")
        if self.purpose is not None and len(self.purpose) > 200:
            raise AuditError("audit purpose must be at most 200 characters")
        return self


@dataclass(frozen=True)
class Record:
    """A stored record: the entry, its place in the chain and its hashes."""

    seq: int
    at: str
    principal: str
    action: str
    target: str
    purpose: str | None
    outcome: str
    detail: str | None
    prev_hash: str
    record_hash: str


@dataclass(frozen=True)
class Verification:
    """What :meth:`AuditLog.verify` found: how many records it read, the head, and the first break if any."""

    records: int
    head_seq: int
    head_hash: str
    broken_at: int | None = None  # sequence number of the first record that is not what the chain says
    problem: str | None = None  # "edited", "deleted", "inserted", "deleted or reordered", "truncated"

    @property
    def intact(self) -> bool:
        """No break found."""
        return self.broken_at is None


def canonical(seq: int, at: str, principal: str, action: str, target: str, purpose: str | None, outcome: str,
              detail: str | None, prev_hash: str) -> bytes:  # fmt: skip
    """The bytes a record's hash covers: a JSON array of the encoding version and every field, in a fixed order."""
    return _ENCODER.encode([ENCODING_VERSION, seq, at, principal, action, target, purpose, outcome, detail,
                            prev_hash]).encode()  # fmt: skip


def record_hash(*fields: object) -> str:
    """SHA-256 (hex) of :func:`canonical` of the fields (``seq`` ... ``prev_hash``)."""
    return hashlib.sha256(canonical(*fields)).hexdigest()  # type: ignore[arg-type]


def _copy_into(conn: Connection, records: Sequence[Record]) -> None:
    """``COPY ... FROM STDIN`` on the transaction's own connection: PostgreSQL takes a batch several times faster
    than as INSERT statements. Every field is inside an alphabet with no tab, newline or backslash (checked
    entries), so the text format needs no escaping; None is ``\\N``."""
    buffer = io.StringIO()
    for r in records:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in (
            r.seq, r.at, r.principal, r.action, r.target, r.purpose, r.outcome, r.detail, r.prev_hash, r.record_hash
        )))  # fmt: skip
        buffer.write("\n")
    buffer.seek(0)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.copy_expert(f"COPY {AuditRecord.__tablename__} ({', '.join(_FIELDS)}) FROM STDIN", buffer)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


class AuditLog:
    """The audit log in the catalog database behind ``engine`` (migrated: :meth:`Catalog.open` does it)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, entry: AuditEntry) -> Record:
        """Record ``entry`` at the end of the chain; returns the stored record."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[Record]:
        """Record ``entries`` in order, in one transaction (all or none), at the end of the chain."""
        checked = [e.checked() for e in entries]
        if not checked:
            return []
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
            head = conn.execute(
                select(AuditRecord.seq, AuditRecord.record_hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).first()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            at = _now()
            records = []
            for e in checked:
                seq += 1
                digest = record_hash(seq, at, e.principal, e.action, e.target, e.purpose, e.outcome, e.detail, prev)
                records.append(Record(seq, at, e.principal, e.action, e.target, e.purpose, e.outcome, e.detail,
                                      prev, digest))  # fmt: skip
                prev = digest
            if conn.dialect.name == "postgresql":
                _copy_into(conn, records)
            else:
                conn.execute(insert(AuditRecord), [r.__dict__ for r in records])
        return records

    def head(self) -> tuple[int, str]:
        """``(seq, record_hash)`` of the last record; ``(0, GENESIS)`` for an empty log."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(AuditRecord.seq, AuditRecord.record_hash).order_by(AuditRecord.seq.desc()).limit(1)
            ).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def for_target(self, target: str, limit: int = 10) -> list[Record]:
        """The last ``limit`` records about ``target``, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*(getattr(AuditRecord, f) for f in _FIELDS))
                .where(AuditRecord.target == target)
                .order_by(AuditRecord.seq.desc())
                .limit(limit)
            ).all()
        return [Record(*row) for row in rows]

    def rows(self, batch: int = 10_000, *, first: int | None = None, last: int | None = None) -> Iterator[tuple]:  # type: ignore[type-arg]
        """Every record (or those with ``first <= seq <= last``) as a tuple of :data:`_FIELDS`, in chain order,
        read in batches (memory stays bounded).

        Read through the driver's own cursor (a server-side one on PostgreSQL): a verify of 10^5 records
        spends its time hashing, not building SQLAlchemy rows.
        """
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            postgres = conn.dialect.name == "postgresql"
            where, params = "", {}
            if first is not None and last is not None:  # each driver's own named-parameter style
                low, high = ("%(first)s", "%(last)s") if postgres else (":first", ":last")
                where, params = f" WHERE seq BETWEEN {low} AND {high}", {"first": first, "last": last}
            sql = f"SELECT {', '.join(_FIELDS)} FROM {AuditRecord.__tablename__}{where} ORDER BY seq"
            cursor = raw.cursor("audit_verify") if postgres else raw.cursor()
            try:
                cursor.execute(sql, params)
                while chunk := cursor.fetchmany(batch):
                    yield from chunk
            finally:
                cursor.close()
                if postgres:
                    raw.rollback()  # the server-side cursor's read-only transaction

    def verify(
        self, *, expected_head: tuple[int, str] | None = None, batch: int = 10_000, workers: int | None = None
    ) -> Verification:
        """Walk the chain from the first record; the first record that is not what the chain says is named.

        ``expected_head``: a ``(seq, record_hash)`` recorded elsewhere (an export's signed head); a log
        whose records end before it, or whose record there has another hash, is reported ``truncated`` or
        ``edited`` (one walk). ``workers``: processes that each walk a part of the log, their parts' ends then
        checked against each other (default: one per core, at most 4, for logs of :data:`PARALLEL_MIN_RECORDS`
        records or more); the result is the same as one walk's.
        """
        last = self.head()[0]
        if workers is None:
            workers = min(4, os.cpu_count() or 1) if last >= PARALLEL_MIN_RECORDS else 1
        if workers <= 1 or last < 2 * workers or expected_head is not None:
            return verify_rows(self.rows(batch), expected_head=expected_head)
        step = -(-last // workers)
        bounds = [(lo, min(lo + step - 1, last)) for lo in range(1, last + 1, step)]
        url = self.engine.url.render_as_string(hide_password=False)
        with ProcessPoolExecutor(len(bounds), mp_context=multiprocessing.get_context("forkserver")) as pool:
            parts = list(pool.map(_walk_part, [(url, lo, hi, batch) for lo, hi in bounds]))
        return _joined(parts)


PARALLEL_MIN_RECORDS = 500_000  # below it, starting the workers costs more than they save (measured at 2*10^5)


@dataclass(frozen=True)
class _Part:
    """One worker's walk of ``first..last``: what :func:`verify_rows` found there, its first record's link and the
    hashes of its last two records (when intact)."""

    first: int
    first_prev: str | None  # prev_hash of its first record (None: it has none)
    result: Verification
    last_two: tuple[str, ...]


def _walk_part(job: tuple[str, int, int, int]) -> _Part:
    from clinical_pipelines.catalog.db import make_engine

    url, first, last, batch = job
    engine = make_engine(url)
    try:
        rows = AuditLog(engine).rows(batch, first=first, last=last)
        peek = next(rows, None)
        if peek is None:
            return _Part(first, None, Verification(0, first - 1, "", first, "deleted"), ())
        seen: deque[str] = deque(maxlen=2)  # the hashes of the last two records read

        def tracked() -> Iterator[tuple]:  # type: ignore[type-arg]
            for row in itertools.chain((peek,), rows):
                seen.append(str(row[9]))
                yield row

        result = verify_rows(tracked(), start_seq=first, start_prev=str(peek[8]))
        if result.intact and result.records < last - first + 1:  # its rows ended early: the rest were deleted
            result = Verification(result.records, result.head_seq, result.head_hash, result.head_seq + 1, "deleted")
        return _Part(first, str(peek[8]), result, tuple(seen))
    finally:
        engine.dispose()


def _joined(parts: list[_Part]) -> Verification:
    """One walk's result from the parts' walks: the first break in sequence order, links across parts checked."""
    records, prev, before_prev = 0, GENESIS, None
    for part in parts:
        found = part.result
        if found.broken_at == part.first and found.problem == "deleted":  # its first record is missing
            return Verification(records, part.first - 1, prev, part.first, "deleted")
        if part.first_prev is not None and part.first_prev != prev:
            if before_prev is not None and part.first_prev == before_prev:
                return Verification(records - 1, part.first - 2, before_prev, part.first - 1, "inserted")
            return Verification(records, part.first - 1, prev, part.first, "deleted or reordered")
        if not found.intact:
            kept = found.head_hash if found.records else prev
            return Verification(records + found.records, found.broken_at - 1, kept, found.broken_at, found.problem)  # type: ignore[operator]
        records += found.records
        before_prev = part.last_two[0] if len(part.last_two) == 2 else prev
        prev = found.head_hash
    return Verification(records, records, prev)


def verify_rows(
    rows: Iterable[tuple],  # type: ignore[type-arg]
    *,
    expected_head: tuple[int, str] | None = None,
    start_seq: int = 1,
    start_prev: str = GENESIS,
) -> Verification:
    """:meth:`AuditLog.verify` over ``rows`` (tuples of seq ... record_hash in chain order).

    The first record that breaks the chain is named, with what the chain shows: ``deleted`` (a sequence
    number is missing), ``inserted`` (the record before this one was not in the chain: this one links to
    the record before that), ``deleted or reordered`` (this one links to a record that is not its
    predecessor), ``edited`` (its fields do not hash to its hash).
    """
    expected_seq, prev, before_prev, count = start_seq, start_prev, None, 0
    head_hash = None
    for seq, at, principal, action, target, purpose, outcome, detail, prev_hash, stored in rows:
        if seq != expected_seq:
            return Verification(count, expected_seq - 1, prev, expected_seq, "deleted")
        if prev_hash != prev:
            if before_prev is not None and prev_hash == before_prev:
                return Verification(count - 1, seq - 2, before_prev, seq - 1, "inserted")
            return Verification(count, seq - 1, prev, seq, "deleted or reordered")
        if record_hash(seq, at, principal, action, target, purpose, outcome, detail, prev_hash) != stored:
            return Verification(count, seq - 1, prev, seq, "edited")
        if expected_head is not None and seq == expected_head[0]:
            head_hash = stored
        before_prev, prev, expected_seq, count = prev, stored, seq + 1, count + 1
    if expected_head is not None:
        want_seq, want_hash = expected_head
        if expected_seq - 1 < want_seq:
            return Verification(count, expected_seq - 1, prev, expected_seq, "truncated")
        if head_hash != want_hash:
            return Verification(count, expected_seq - 1, prev, want_seq, "edited")
    return Verification(count, expected_seq - 1, prev)
