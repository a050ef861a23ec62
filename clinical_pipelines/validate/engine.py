"""Validate one modality of one ingested drop: parse each raw item, run its suite, quarantine failures.

Outcome per drop and modality:
- items that cannot be parsed, or fail per-item rules, go to quarantine with a reason;
- tables keep their passing rows (quarantining the rejected rows) unless too many fail;
- the drop *fails* (stops at this stage) when a critical frame-level rule fails or more
  than ``max_item_failure_fraction`` of its items fail;
- a validated record lists what passed, for the de-identification stage to take.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from clinical_pipelines.limits import TOO_LARGE, Limits
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord, count_reasons
from clinical_pipelines.raw.zone import RawFile, RawZone
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.envelope import DecryptingReader, DecryptionError, decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.validate.dicom import HEADER_PREFIX_BYTES, ParseFailure, parse_dicom
from clinical_pipelines.validate.expectations import ITEM_COLUMN, RuleOutcome, run_suite
from clinical_pipelines.validate.notes import parse_note
from clinical_pipelines.validate.suites import dicom_rules, note_rules, table_rules
from clinical_pipelines.validate.tables import ParsedTable, parse_table
from clinical_pipelines.zones import raw_object_key, validated_record_key

STAGE = "validate"
DEFAULT_MAX_ITEM_FAILURE_FRACTION = 0.2
TOO_MANY_ITEM_FAILURES = "too_many_item_failures"
ENGINE_ERROR = "engine_error"  # an unexpected exception on one item: its type only, never its message


class _Tampered(Exception):
    """A raw object failed authentication (or its plaintext size differs from its record)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def engine_error(exc: BaseException, where: str) -> ParseFailure:
    """An unexpected exception reduced to its type: messages may quote values from the file."""
    return ParseFailure(ENGINE_ERROR, f"{type(exc).__name__} while {where}")


@dataclass(frozen=True)
class ValidatedTable:
    """A table's passing rows, stored as encrypted Parquet in the raw zone."""

    source_sha256: str
    kind: str
    parquet_sha256: str
    rows: int
    rows_rejected: int


@dataclass
class ValidationReport:
    """The outcome of validating one modality of one drop. Holds no PHI."""

    modality: str
    source: str
    drop_id: str
    items_total: int = 0
    passed_items: list[str] = field(default_factory=list)  # raw sha256s
    tables: list[ValidatedTable] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    outcomes: list[RuleOutcome] = field(default_factory=list)
    critical_failures: list[str] = field(default_factory=list)
    failed_items: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when nothing critical failed: the drop may be promoted."""
        return not self.critical_failures

    def quarantined_by_reason(self) -> dict[str, int]:
        """Count of quarantined items per reason code."""
        return count_reasons(self.quarantined)

    def to_record(self) -> bytes:
        """The validated record (canonical JSON)."""
        doc = {
            "modality": self.modality,
            "source": self.source,
            "drop_id": self.drop_id,
            "passed": self.passed,
            "critical_failures": sorted(self.critical_failures),
            "items": sorted(self.passed_items),
            "tables": [asdict(t) for t in sorted(self.tables, key=lambda t: t.source_sha256)],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class DropValidator:
    """Validates drops of one store's raw zone."""

    def __init__(
        self,
        store: ObjectStore,
        keyring: KeyRing,
        *,
        max_item_failure_fraction: float = DEFAULT_MAX_ITEM_FAILURE_FRACTION,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.keyring = keyring
        self.raw = RawZone(store, keyring)
        self.quarantine = Quarantine(store, keyring)
        self.max_fraction = max_item_failure_fraction

    def validate(self, source: str, drop_id: str, modality: str) -> ValidationReport:
        """Validate the ``modality`` items of an ingested drop; see the module docstring."""
        started = time.perf_counter()
        report = ValidationReport(modality=modality, source=source, drop_id=drop_id)
        files = self.raw.read_drop_record(source, drop_id).by_modality(modality)
        report.items_total = len(files)
        if modality == "tabular":
            self._validate_tables(report, files)
        else:
            self._validate_items(report, files)
        if report.items_total and report.failed_items / report.items_total > self.max_fraction:
            report.critical_failures.append(TOO_MANY_ITEM_FAILURES)
        key = validated_record_key(modality, source, drop_id)
        self.store.put_bytes(key, encrypt_bytes(report.to_record(), self.keyring, context=key))
        report.seconds = time.perf_counter() - started
        return report

    # -- files judged one by one (DICOM, notes) -------------------------------------
    def _validate_items(self, report: ValidationReport, files: tuple[RawFile, ...]) -> None:
        import pandas as pd

        parse = parse_dicom if report.modality == "dicom" else parse_note
        rows: list[dict[str, Any]] = []
        by_sha: dict[str, RawFile] = {}
        for raw_file in files:  # one at a time: memory is one item (bounded by the size limit)
            try:
                parsed = self._parse_item(report, raw_file, parse)
            except _Tampered as tampered:
                self._quarantine_tampered(report, raw_file, tampered.detail)
                continue
            except Exception as exc:  # an input no parser foresaw: this item only, its exception type only
                parsed = engine_error(exc, f"parsing a {report.modality} item")
            if isinstance(parsed, ParseFailure):
                self._quarantine(report, raw_file, parsed.reason, parsed.detail, self._original(raw_file))
                continue
            rows.append({ITEM_COLUMN: raw_file.sha256, **parsed})
            by_sha[raw_file.sha256] = raw_file
        if not rows:
            return
        rules = dicom_rules() if report.modality == "dicom" else note_rules()
        report.outcomes = run_suite(report.modality, pd.DataFrame(rows), rules)
        failing = self._judge(report, report.outcomes)
        missing = {row[ITEM_COLUMN]: row.get("missing_required_attributes") for row in rows}
        for sha, rule_names in sorted(failing.items()):
            detail = "failed: " + ", ".join(sorted(rule_names))
            if missing.get(sha):  # attribute keywords, never values
                detail += f"; missing: {missing[sha]}"
            self._quarantine(report, by_sha[sha], "validation_failed", detail, self._original(by_sha[sha]))
        report.passed_items = sorted(sha for sha in by_sha if sha not in failing)

    def _parse_item(
        self, report: ValidationReport, raw_file: RawFile, parse: Callable[..., dict[str, Any] | ParseFailure]
    ) -> dict[str, Any] | ParseFailure:
        """Parse one item; a DICOM file is judged from its header when its first chunk holds it.

        Every object is authenticated to its last chunk (streamed, nothing kept past the header), so a
        raw object altered anywhere is ``tampered_object`` here, not a failed drop later; one larger
        than its modality's limit is ``too_large`` unread.
        """
        limit = self.limits.max_object_bytes(report.modality)
        if raw_file.size > limit:
            return ParseFailure(TOO_LARGE, f"{raw_file.size} bytes; the {report.modality} limit is {limit} bytes")
        try:
            with self.raw.open_object(raw_file.sha256) as reader:
                if parse is parse_dicom and raw_file.size > HEADER_PREFIX_BYTES:
                    prefix = _read_up_to(reader, HEADER_PREFIX_BYTES)
                    parsed = parse_dicom(prefix, size=raw_file.size, limits=self.limits)
                    if not (isinstance(parsed, ParseFailure) and parsed.reason == "truncated_dicom"):
                        self._authenticated(report, raw_file, len(prefix) + _drain(reader))
                        return parsed  # otherwise the header runs past the prefix: read the whole file
                    data = prefix + reader.read()
                else:
                    data = reader.read()
        except DecryptionError as exc:
            raise _Tampered(str(exc)) from None
        self._authenticated(report, raw_file, len(data))
        return parse(data, limits=self.limits)

    @staticmethod
    def _authenticated(report: ValidationReport, raw_file: RawFile, size: int) -> None:
        report.bytes_read += size
        if size != raw_file.size:
            raise _Tampered(f"plaintext is {size} bytes; the drop record says {raw_file.size}")

    def _original(self, raw_file: RawFile) -> BinaryIO:
        """The item's plaintext as a stream (quarantine copies it without holding it)."""
        return self.raw.open_object(raw_file.sha256)  # type: ignore[return-value]

    def _quarantine_tampered(self, report: ValidationReport, raw_file: RawFile, detail: str) -> None:
        """Quarantine an object that fails authentication, keeping its stored bytes exactly as found."""
        with self.store.open_read(raw_object_key(raw_file.sha256)) as stored:
            self._quarantine(report, raw_file, "tampered_object", detail[:300], stored)

    def _judge(self, report: ValidationReport, outcomes: list[RuleOutcome], prefix: str = "") -> dict[str, set[str]]:
        """Record critical frame-level failures; return failing item id -> names of the rules it failed."""
        failing: dict[str, set[str]] = {}
        for outcome in outcomes:
            if outcome.success:
                continue
            if outcome.per_item and outcome.failing_items:
                for item in outcome.failing_items:
                    failing.setdefault(item, set()).add(outcome.name)
            elif outcome.critical:
                report.critical_failures.append(prefix + outcome.name)
        return failing

    # -- tables: rows judged, files kept minus rejected rows --------------------------
    def _validate_tables(self, report: ValidationReport, files: tuple[RawFile, ...]) -> None:
        for raw_file in files:
            limit = self.limits.max_object_bytes("tabular")
            if raw_file.size > limit:
                detail = f"{raw_file.size} bytes; the tabular limit is {limit} bytes"
                self._quarantine(report, raw_file, TOO_LARGE, detail, self._original(raw_file))
                continue
            try:
                data = self.raw.read_object(raw_file.sha256)
                self._authenticated(report, raw_file, len(data))
            except (DecryptionError, _Tampered) as exc:
                self._quarantine_tampered(report, raw_file, str(exc))
                continue
            try:
                parsed = parse_table(data, limits=self.limits)
                if not isinstance(parsed, ParseFailure):
                    self._validate_table(report, raw_file, parsed, data)
                    continue
            except Exception as exc:  # this table only, its exception type only
                parsed = engine_error(exc, "parsing a table")
            self._quarantine(report, raw_file, parsed.reason, parsed.detail, data)

    def _validate_table(self, report: ValidationReport, raw_file: RawFile, table: ParsedTable, data: bytes) -> None:
        frame = table.frame.copy()
        row_ids = [f"{raw_file.sha256[:16]}:{i}" for i in range(len(frame))]
        frame.insert(0, ITEM_COLUMN, row_ids)
        outcomes = run_suite(table.schema.name, frame, table_rules(table.schema))
        renamed = [
            RuleOutcome(**{**asdict(o), "name": f"{table.schema.name}/{o.name}", "failing_items": o.failing_items})
            for o in outcomes
        ]
        report.outcomes.extend(renamed)
        failing = self._judge(report, renamed)
        rejected = sorted(int(item.rsplit(":", 1)[1]) for item in failing)
        if frame.shape[0] and len(rejected) / frame.shape[0] > self.max_fraction:
            rules = sorted({name for names in failing.values() for name in names})
            detail = f"{len(rejected)} of {frame.shape[0]} rows failed: {', '.join(rules)}"
            self._quarantine(report, raw_file, "validation_failed", detail, data)
            return
        if rejected:
            rules = sorted({name for names in failing.values() for name in names})
            rows_csv = "\n".join([table.lines[0], *(table.lines[i + 1] for i in rejected)]) + "\n"
            self._quarantine(
                report,
                raw_file,
                "rejected_rows",
                f"{len(rejected)} of {frame.shape[0]} rows failed: " + ", ".join(rules),
                rows_csv.encode(),
                path_suffix="#rejected-rows",
                count_as_failed=False,
            )
        kept = table.frame.drop(index=rejected).reset_index(drop=True)
        parquet = io.BytesIO()
        kept.to_parquet(parquet, index=False)
        digest = self.raw.put_small_object(parquet.getvalue())
        report.tables.append(ValidatedTable(raw_file.sha256, table.schema.name, digest, len(kept), len(rejected)))
        report.passed_items.append(raw_file.sha256)

    def _quarantine(
        self,
        report: ValidationReport,
        raw_file: RawFile,
        reason: str,
        detail: str,
        data: bytes | BinaryIO,
        *,
        path_suffix: str = "",
        count_as_failed: bool = True,
    ) -> None:
        if isinstance(data, bytes):
            data = io.BytesIO(data)
        try:
            record = self._put(report, raw_file, reason, detail, data, path_suffix)
        except DecryptionError:  # the original fails authentication while being copied: keep it as stored
            with self.store.open_read(raw_object_key(raw_file.sha256)) as stored:
                record = self._put(report, raw_file, "tampered_object", "failed authentication", stored, path_suffix)
        finally:
            if isinstance(data, DecryptingReader):
                data.close()
        report.quarantined.append(record)
        report.failed_items += count_as_failed

    def _put(
        self, report: ValidationReport, raw_file: RawFile, reason: str, detail: str, data: BinaryIO, suffix: str
    ) -> QuarantineRecord:
        return self.quarantine.put(
            reason=reason,
            detail=detail,
            stage=STAGE,
            source=report.source,
            drop_id=report.drop_id,
            path=raw_file.path + suffix,
            content=data,
        )


def _read_up_to(reader: DecryptingReader, size: int) -> bytes:
    """The next ``size`` plaintext bytes (fewer only at the end)."""
    parts, remaining = [], size
    while remaining and (part := reader.read(remaining)):
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _drain(reader: DecryptingReader, block: int = 1024 * 1024) -> int:
    """Authenticate the rest of ``reader`` chunk by chunk, keeping nothing; the bytes it held."""
    total = 0
    while part := reader.read(block):
        total += len(part)
    return total


def read_validated_record(store: ObjectStore, keyring: KeyRing, modality: str, source: str, drop_id: str) -> dict:
    """The validated record of a drop's modality (what passed, and whether the drop passed)."""
    key = validated_record_key(modality, source, drop_id)
    return json.loads(decrypt_bytes(read_all(store, key), keyring, context=key))
