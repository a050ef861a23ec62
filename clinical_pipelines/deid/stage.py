"""The de-identified stage for one drop and modality: validated raw items in, de-identified objects out.

De-identified objects are content-addressed in ``curated/objects`` (no PHI, stored in the clear);
a per-drop record lists them with pseudonymous patient ids; the raw → de-identified mapping, which
links back to PHI, stays encrypted in the raw zone. Every output is scanned for the original's
identifiers; any hit fails the drop (the Dagster layer turns that into a blocking check).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from clinical_pipelines.deid.dicom import DicomDeidentifier
from clinical_pipelines.deid.dicom_pool import DicomOutcome, deidentify_one, pool_is_warm, warm_pool
from clinical_pipelines.deid.findings import DicomFindings, table_findings
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.notes_pool import NoteOutcome, judge_notes, notes_pool_is_warm, warm_notes_pool
from clinical_pipelines.deid.profile import PROFILE_NAME, PROFILE_VERSION
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.residual import scan
from clinical_pipelines.deid.tables import POLICIES, deidentify_table, table_csv_bytes
from clinical_pipelines.limits import Limits
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord, count_reasons
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.storage import ObjectAlreadyExists, ObjectStore
from clinical_pipelines.storage.envelope import DecryptionError, encrypt_bytes
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.validate.engine import read_validated_record
from clinical_pipelines.zones import curated_object_key, deid_lineage_key, deid_record_key

STAGE = "deid"
#: A drop with fewer files of a modality is de-identified in the stage's own process, unless the process
#: already holds warm workers for it (:func:`prewarm_pools`): starting worker processes (imports, engines)
#: costs more than a few files take.
POOL_MIN_FILES = 32
ENGINE_ERROR = "engine_error"
TAMPERED = "tampered_object"


def _type_only(exc: BaseException, where: str) -> str:
    """An unexpected exception as a quarantine detail: its type, never its message (which may quote values)."""
    return f"{type(exc).__name__} while {where}"


_WARM_ENGINES: dict[bytes, tuple[Pseudonymizer, DicomDeidentifier, NoteDeidentifier]] = {}
_WARM_LOCK = threading.Lock()
_WARM_MAX = 4  # distinct secrets kept warm in one process (one in any real deployment)


def warm_engines(key: bytes) -> tuple[Pseudonymizer, DicomDeidentifier, NoteDeidentifier]:
    """The pseudonymizer and the DICOM and notes de-identifiers for the secret ``key``, built once per process.

    Every drop (and every modality step of a drop) in a process gets the same engines: Presidio and
    the spaCy model load once (seconds each time, otherwise once per step that analyses text), and the
    pseudonymizer's keyed caches (UIDs, patients, date shifts) stay warm across drops. The engines keep
    no per-drop state: what they compute depends on the secret and the input only, so sharing them
    changes no output. Keyed by a hash of the secret, never the secret itself.
    """
    fingerprint = hashlib.sha256(b"clinical-pipelines/warm-engines\0" + key).digest()
    with _WARM_LOCK:
        engines = _WARM_ENGINES.get(fingerprint)
        if engines is None:
            if len(_WARM_ENGINES) >= _WARM_MAX:
                _WARM_ENGINES.clear()
            pseudonymizer = Pseudonymizer(key)
            engines = (pseudonymizer, DicomDeidentifier(pseudonymizer), NoteDeidentifier(pseudonymizer))
            _WARM_ENGINES[fingerprint] = engines
        return engines


def prewarm_pools(
    pseudonymizer: Pseudonymizer,
    dicom: DicomDeidentifier,
    notes: NoteDeidentifier,
    workers: int,
    expected: dict[str, int],
    *,
    pool_min_files: int = POOL_MIN_FILES,
) -> list[str]:
    """Start, without waiting, the warm worker pools that drops holding ``expected`` files per modality will
    use; returns the modalities whose pools were started.

    A pool is started when ``workers > 1`` and the files of its modality across the drops to come reach
    ``pool_min_files``: the workers load their engines on the other cores while this process goes on
    (ingest, validation), and every later drop of that modality in this process uses them, however few
    its files. Pool and in-process results are the same bytes, so this changes speed only.
    """
    started = []
    if workers <= 1:
        return started
    if expected.get("dicom", 0) >= pool_min_files and dicom.text_cleaner is None:
        warm_pool(pseudonymizer, dicom.policy, workers).start_workers()
        started.append("dicom")
    if expected.get("notes", 0) >= pool_min_files:
        warm_notes_pool(notes, pseudonymizer, workers).start_workers()
        started.append("notes")
    return started


class NotPromotable(Exception):
    """The drop's validation did not pass: nothing is de-identified."""


@dataclass(frozen=True)
class DeidItem:
    """One de-identified object (no PHI)."""

    sha256: str
    size: int
    kind: str  # "dicom", "notes", or the table kind
    patient_ids: tuple[str, ...]
    attributes: dict[str, str] = field(default_factory=dict)  # DICOM: modality, body part, shifted date...


@dataclass
class DeidStageReport:
    """What de-identifying one modality of a drop did; counts, hashes and pseudonyms only."""

    modality: str
    source: str
    drop_id: str
    profile: str
    items: list[DeidItem] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    residual_hits: dict[str, int] = field(default_factory=dict)
    residual_items: set[str] = field(default_factory=set)  # raw sha256 of items with any finding
    identifiers_searched: int = 0
    bytes_in: int = 0
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when the residual scan found nothing."""
        return not self.residual_hits

    @property
    def items_with_residual(self) -> int:
        """How many outputs had any residual finding (known identifier or re-analysis)."""
        return len(self.residual_items)

    @property
    def patients(self) -> int:
        """Distinct pseudonymous patients in the output."""
        return len({p for item in self.items for p in item.patient_ids})

    def quarantined_by_reason(self) -> dict[str, int]:
        """Count of quarantined items per reason code."""
        return count_reasons(self.quarantined)


class DropDeidentifier:
    """De-identifies validated drops of one store."""

    def __init__(
        self,
        store: ObjectStore,
        keyring: KeyRing,
        pseudonymizer: Pseudonymizer,
        dicom: DicomDeidentifier,
        notes: NoteDeidentifier | None = None,
        *,
        limits: Limits | None = None,
        workers: int = 1,
        pool_min_files: int = POOL_MIN_FILES,
    ) -> None:
        self.limits = limits or Limits()
        self.workers = workers
        self.pool_min_files = pool_min_files
        self.store = store
        self.keyring = keyring
        self.raw = RawZone(store, keyring)
        self.quarantine = Quarantine(store, keyring)
        self.pseudonymizer = pseudonymizer
        self.dicom = dicom
        self.notes = notes

    def deidentify(self, source: str, drop_id: str, modality: str) -> DeidStageReport:
        """De-identify a drop's validated ``modality`` items; :class:`NotPromotable` if validation failed."""
        started = time.perf_counter()
        validated = read_validated_record(self.store, self.keyring, modality, source, drop_id)
        if not validated["passed"]:
            raise NotPromotable(f"drop {source}/{drop_id} did not pass {modality} validation")
        report = DeidStageReport(
            modality=modality, source=source, drop_id=drop_id,
            profile=f"{PROFILE_NAME} {PROFILE_VERSION}; options: {', '.join(self.dicom.profile.options)}",
        )  # fmt: skip
        lineage: dict[str, str] = {}
        if modality == "dicom":
            self._dicom(report, validated["items"], lineage)
        elif modality == "tabular":
            self._tables(report, validated["tables"], lineage)
        elif modality == "notes" and self.notes is not None:
            self._notes(report, validated["items"], lineage)
        else:
            raise NotImplementedError(f"de-identification of {modality} is not wired yet")
        self.store.put_bytes(deid_record_key(modality, source, drop_id), self._record(report))
        lineage_key = deid_lineage_key(modality, source, drop_id)
        self.store.put_bytes(
            lineage_key, encrypt_bytes(json.dumps(lineage, sort_keys=True).encode(), self.keyring, context=lineage_key)
        )
        report.seconds = time.perf_counter() - started
        return report

    def _dicom(self, report: DeidStageReport, raw_items: list[str], lineage: dict[str, str]) -> None:
        names = self._names(report)
        in_flight: deque[tuple[str, bytes]] = deque()  # read, not yet judged: bounded by the pool's window

        def inputs() -> Iterator[bytes]:
            for sha in raw_items:  # read one file at a time, just before it is needed
                data = self._read(report, sha, names.get(sha))
                if data is not None:
                    report.bytes_in += len(data)
                    in_flight.append((sha, data))
                    yield data

        notes = self.notes
        findings = DicomFindings(self.dicom, (lambda: notes.analyze_many) if notes is not None else None)
        for outcome in self._dicom_outcomes(findings, inputs(), len(raw_items)):
            sha, data = in_flight.popleft()
            report.identifiers_searched += outcome.identifiers_searched
            if outcome.refused is not None:
                self._quarantine(report, names.get(sha), *outcome.refused, data)
            elif outcome.error is not None or outcome.report is None or outcome.hits is None:
                detail = f"{outcome.error or 'no result'} while de-identifying"  # never fails the drop
                self._quarantine(report, names.get(sha), ENGINE_ERROR, detail, data)
            else:
                item, hits = outcome.report, outcome.hits + findings.reanalysed(outcome.texts)
                self._emit(report, lineage, sha, names.get(sha), data, outcome.out, "dicom", (item.patient_id,),
                           hits, item.attributes)  # fmt: skip

    def _dicom_outcomes(self, findings: DicomFindings, inputs: Iterator[bytes], count: int) -> Iterator[DicomOutcome]:
        """De-identified and searched inputs, in order: over the warm worker pool when the drop is large enough
        to pay for it (text values left for ``findings`` to re-analyse), else here with ``findings`` (the same
        engines either way, so the same bytes and findings)."""
        if self.workers > 1 and self.dicom.text_cleaner is None and (
            count >= self.pool_min_files or pool_is_warm(self.pseudonymizer, self.dicom.policy, self.workers)
        ):
            return warm_pool(self.pseudonymizer, self.dicom.policy, self.workers).map(inputs)
        return (deidentify_one(findings, data) for data in inputs)

    def _notes(self, report: DeidStageReport, raw_items: list[str], lineage: dict[str, str]) -> None:
        assert self.notes is not None
        names = self._names(report)
        pooled = self.workers > 1 and (
            len(raw_items) >= self.pool_min_files or notes_pool_is_warm(self.notes, self.pseudonymizer, self.workers)
        )
        # Over the pool, batches small enough that every worker gets several; memory: a few batches at a time.
        size = max(1, self.limits.notes_batch)
        if pooled:
            size = max(1, min(size, -(-len(raw_items) // (4 * self.workers))))
        in_flight: deque[list[tuple[str, bytes]]] = deque()

        def batches() -> Iterator[list[str]]:
            for start in range(0, len(raw_items), size):
                batch = []
                for sha in raw_items[start : start + size]:
                    data = self._read(report, sha, names.get(sha))
                    if data is not None:
                        report.bytes_in += len(data)
                        batch.append((sha, data))
                if batch:
                    in_flight.append(batch)
                    yield [data.decode("utf-8-sig") for _, data in batch]

        notes, pseudonymizer = self.notes, self.pseudonymizer
        judged: Iterator[list[NoteOutcome]] = (
            warm_notes_pool(notes, pseudonymizer, self.workers).map(batches())
            if pooled
            else (judge_notes(notes, pseudonymizer, texts) for texts in batches())
        )
        for outcomes in judged:
            for (sha, data), outcome in zip(in_flight.popleft(), outcomes, strict=True):
                if outcome.error is not None:
                    self._quarantine(report, names.get(sha), ENGINE_ERROR, f"{outcome.error} while de-identifying",
                                     data)  # fmt: skip
                    continue
                report.identifiers_searched += outcome.searched
                self._emit(report, lineage, sha, names.get(sha), data, outcome.out, "notes", outcome.patients,
                           outcome.hits)  # fmt: skip

    def _tables(self, report: DeidStageReport, tables: list[dict], lineage: dict[str, str]) -> None:
        import pandas as pd

        names = self._names(report)
        analyze = self.notes.analyze_many if self.notes is not None else None
        for table in tables:  # one table at a time (bounded by CLINICAL_PIPELINES_MAX_TABLE_CELLS at validation)
            source = table["source_sha256"]
            parquet = self._read(report, table["parquet_sha256"], names.get(source), original_sha=source)
            if parquet is None:
                continue
            try:
                frame = pd.read_parquet(io.BytesIO(parquet))
                report.bytes_in += int(frame.memory_usage(deep=True).sum())
                result = deidentify_table(frame, table["kind"], self.pseudonymizer, notes=self.notes)
                out = table_csv_bytes(result.frame)
                patients = tuple(sorted(set(result.frame["patient_id"].dropna())))
                hits = table_findings(frame, result, POLICIES[table["kind"]], out, analyze)
            except Exception as exc:  # this table only, its exception type only
                original = self._read(report, source, names.get(source))
                if original is not None:
                    detail = _type_only(exc, "de-identifying a table")
                    self._quarantine(report, names.get(source), ENGINE_ERROR, detail, original)
                continue
            original = (self._read(report, source, names.get(source)) if +hits else b"") or b""
            self._emit(report, lineage, source, names.get(source), original, out, table["kind"], patients, hits)

    def _read(
        self, report: DeidStageReport, sha: str, path: str | None, *, original_sha: str | None = None
    ) -> bytes | None:
        """A raw object's plaintext; None (the item quarantined as ``tampered_object``, its stored bytes kept)
        when it fails authentication. The rest of the drop goes on."""
        try:
            return self.raw.read_object(sha)
        except DecryptionError as exc:
            with self.store.open_read(self.raw.object_key(original_sha or sha)) as stored:
                report.quarantined.append(
                    self.quarantine.put(
                        reason=TAMPERED, detail=str(exc)[:300], stage=STAGE, source=report.source,
                        drop_id=report.drop_id, path=path, content=stored,
                    )
                )  # fmt: skip
            return None

    def _names(self, report: DeidStageReport) -> dict[str, str]:
        """Raw sha256 -> the file's path in its drop (PHI: only ever stored encrypted, in quarantine)."""
        return {f.sha256: f.path for f in self.raw.read_drop_record(report.source, report.drop_id).files}

    @staticmethod
    def _known(report: DeidStageReport, out: bytes, identifiers: dict[str, set[str]]) -> Counter[str]:
        report.identifiers_searched += sum(len(v) for v in identifiers.values())
        return Counter(scan(out, identifiers))

    def _emit(
        self,
        report: DeidStageReport,
        lineage: dict[str, str],
        raw_sha: str,
        path: str | None,
        original: bytes,
        out: bytes,
        kind: str,
        patients: tuple[str, ...],
        hits: Counter[str],
        attributes: dict[str, str] | None = None,
    ) -> None:
        """Store a clean output in curated/; an output with any residual finding never gets there: its
        original goes to quarantine and the finding fails the drop's residual-PHI check."""
        hits = +hits  # drop zero counts
        if hits:
            report.residual_items.add(raw_sha)
            for finding, count in hits.items():
                report.residual_hits[finding] = report.residual_hits.get(finding, 0) + count
            detail = "found after de-identification: " + ", ".join(f"{k} x{v}" for k, v in sorted(hits.items()))
            self._quarantine(report, path, "residual_phi", detail, original)
            return
        digest = hashlib.sha256(out).hexdigest()
        with contextlib.suppress(ObjectAlreadyExists):  # identical de-identified content: stored once
            self.store.put_bytes(curated_object_key(digest), out, write_once=True)
        report.items.append(DeidItem(digest, len(out), kind, patients, dict(attributes or {})))
        lineage[raw_sha] = digest

    def _quarantine(self, report: DeidStageReport, path: str | None, reason: str, detail: str, data: bytes) -> None:
        report.quarantined.append(
            self.quarantine.put(
                reason=reason,
                detail=detail,
                stage=STAGE,
                source=report.source,
                drop_id=report.drop_id,
                path=path,
                content=io.BytesIO(data),
            )
        )

    @staticmethod
    def _record(report: DeidStageReport) -> bytes:
        doc = {
            "modality": report.modality,
            "source": report.source,
            "drop_id": report.drop_id,
            "profile": report.profile,
            "passed": report.passed,
            "items": [asdict(i) for i in sorted(report.items, key=lambda i: i.sha256)],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
