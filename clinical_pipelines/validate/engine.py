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
from typing import Any

from clinical_pipelines.quarantine import Quarantine, QuarantineRecord, count_reasons
from clinical_pipelines.raw.zone import RawFile, RawZone
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.envelope import decrypt_bytes, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.validate.dicom import HEADER_PREFIX_BYTES, ParseFailure, parse_dicom
from clinical_pipelines.validate.expectations import ITEM_COLUMN, RuleOutcome, run_suite
from clinical_pipelines.validate.notes import parse_note
from clinical_pipelines.validate.suites import dicom_rules, note_rules, table_rules
from clinical_pipelines.validate.tables import ParsedTable, parse_table
from clinical_pipelines.zones import validated_record_key

STAGE = "validate"
DEFAULT_MAX_ITEM_FAILURE_FRACTION = 0.2
TOO_MANY_ITEM_FAILURES = "too_many_item_failures"


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
    ) -> None:
        self.store = store
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
        for raw_file in files:
            parsed = self._parse_item(report, raw_file, parse)
            if isinstance(parsed, ParseFailure):
                self._quarantine(report, raw_file, parsed.reason, parsed.detail, self.raw.read_object(raw_file.sha256))
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
            self._quarantine(report, by_sha[sha], "validation_failed", detail, self.raw.read_object(sha))
        report.passed_items = sorted(sha for sha in by_sha if sha not in failing)

    def _parse_item(
        self, report: ValidationReport, raw_file: RawFile, parse: Callable[..., dict[str, Any] | ParseFailure]
    ) -> dict[str, Any] | ParseFailure:
        """Parse one item; a DICOM file is judged from its header, read and decrypted alone when it fits."""
        if parse is parse_dicom and raw_file.size > HEADER_PREFIX_BYTES:
            prefix = self.raw.read_prefix(raw_file.sha256, HEADER_PREFIX_BYTES)
            parsed = parse_dicom(prefix, size=raw_file.size)
            if not (isinstance(parsed, ParseFailure) and parsed.reason == "truncated_dicom"):
                report.bytes_read += len(prefix)
                return parsed  # otherwise the header runs past the prefix: read the whole file
        data = self.raw.read_object(raw_file.sha256)
        report.bytes_read += len(data)
        return parse(data)

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
            data = self.raw.read_object(raw_file.sha256)
            report.bytes_read += len(data)
            parsed = parse_table(data)
            if isinstance(parsed, ParseFailure):
                self._quarantine(report, raw_file, parsed.reason, parsed.detail, data)
                continue
            self._validate_table(report, raw_file, parsed, data)

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
        data: bytes,
        *,
        path_suffix: str = "",
        count_as_failed: bool = True,
    ) -> None:
        record = self.quarantine.put(
            reason=reason,
            detail=detail,
            stage=STAGE,
            source=report.source,
            drop_id=report.drop_id,
            path=raw_file.path + path_suffix,
            content=io.BytesIO(data),
        )
        report.quarantined.append(record)
        report.failed_items += count_as_failed


def read_validated_record(store: ObjectStore, keyring: KeyRing, modality: str, source: str, drop_id: str) -> dict:
    """The validated record of a drop's modality (what passed, and whether the drop passed)."""
    key = validated_record_key(modality, source, drop_id)
    return json.loads(decrypt_bytes(read_all(store, key), keyring, context=key))
