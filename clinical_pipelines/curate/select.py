"""Choosing a version's objects: the spec's cohort, modalities and labels applied to de-identified records."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from clinical_pipelines.curate.records import DeidProfile, DeidRecord
from clinical_pipelines.curate.slices import slice_by_patient
from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.zones import curated_object_key

TABLE_KINDS = ("labs", "outcomes")
AGE_COLUMNS = {"outcomes": "age_at_admission", "labs": "age_at_collection"}


class BuildError(ValueError):
    """The inputs cannot make a consistent version (e.g. drops under different de-id profiles)."""


@dataclass(frozen=True)
class Candidate:
    """One object of a version before it is written: a manifest row, plus the bytes of a new table slice."""

    sha256: str
    size: int
    modality: str
    patient_id: str
    drop: str
    attributes: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None  # a per-patient table slice not yet in the store

    @property
    def key(self) -> str:
        """Where the object lives (content-addressed in ``curated/objects``)."""
        return curated_object_key(self.sha256)


@dataclass
class Selection:
    """What a spec selects: objects, the patients' labels, the drops that contributed, their de-id profile."""

    candidates: list[Candidate]
    labels: dict[str, str | None]
    drops: list[str]
    profile: DeidProfile | None


def age_years(value: str) -> int | None:
    """Whole years from a DICOM Age String (``045Y``, ``006M``...) or a released table age (``45``, ``90+``)."""
    text = value.strip().rstrip("+")
    if not text:
        return None
    unit = text[-1].upper() if text[-1].isalpha() else "Y"
    digits = text[:-1] if text[-1].isalpha() else text
    if not digits.isdigit():
        return None
    number = int(digits)
    return {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}.get(unit)


def _imaging_match(spec: DatasetSpec, attributes: dict[str, str]) -> bool:
    cohort = spec.cohort
    if cohort.imaging_modality and attributes.get("modality", "").upper() not in cohort.imaging_modality:
        return False
    if cohort.body_part and attributes.get("body_part", "").upper() not in cohort.body_part:
        return False
    date = attributes.get("study_date", "")
    if (cohort.date_start or cohort.date_end) and not date:
        return False
    if cohort.date_start and date < cohort.date_start:
        return False
    return not (cohort.date_end and date > cohort.date_end)


def _tables(store: ObjectStore, records: Iterable[DeidRecord], kinds: set[str]) -> list[Candidate]:
    """Per-patient slices of every de-identified table of ``kinds``."""
    out = []
    for record in records:
        for item in record.items:
            if item["kind"] not in kinds:
                continue
            where = f"de-identified {item['kind']} table {item['sha256'][:12]} of {record.drop}"
            for piece in slice_by_patient(read_all(store, curated_object_key(item["sha256"])), where=where):
                attributes = {"table": item["kind"], "rows": str(len(piece.rows)), "source_sha256": item["sha256"]}
                age_column = AGE_COLUMNS.get(item["kind"], "")
                ages = sorted({r.get(age_column, "") for r in piece.rows} - {""})
                if ages:
                    attributes["ages"] = ",".join(ages)
                out.append(
                    Candidate(
                        sha256=hashlib.sha256(piece.data).hexdigest(),
                        size=len(piece.data),
                        modality=item["kind"],
                        patient_id=piece.patient_id,
                        drop=record.drop,
                        attributes=attributes,
                        data=piece.data,
                    )
                )
    return out


def _labels(store: ObjectStore, spec: DatasetSpec, records: list[DeidRecord]) -> dict[str, str | None]:
    """Each patient's label under the spec's rules: the latest row by ``order_by`` (then by label) wins."""
    rules = spec.labels
    if rules is None:
        return {}
    best: dict[str, tuple[str, str]] = {}
    for record in records:
        for item in record.items:
            if item["kind"] != rules.table:
                continue
            for piece in slice_by_patient(read_all(store, curated_object_key(item["sha256"])), where=rules.table):
                for row in piece.rows:
                    if rules.column not in row:
                        raise BuildError(f"label column {rules.column!r} is not in the {rules.table} table")
                    label = rules.label_for(row[rules.column])
                    if label is None:
                        continue
                    rank = (row.get(rules.order_by, "") if rules.order_by else "", label)
                    if piece.patient_id not in best or rank > best[piece.patient_id]:
                        best[piece.patient_id] = rank
    return {patient: rank[1] for patient, rank in best.items()}


def select(store: ObjectStore, spec: DatasetSpec, records: list[DeidRecord]) -> Selection:
    """Apply ``spec`` to the passed de-identification ``records``.

    Promises: only objects of records that passed their residual-PHI scan; exactly one patient per
    candidate (tables are sliced per patient, notes without a recognised patient are left out); a
    patient is in the cohort only if every criterion holds (imaging criteria on at least one series,
    whose matching series alone are then taken); the result does not depend on record order.
    """
    passed = [r for r in records if r.passed]
    wanted = set(spec.modalities)
    pool: list[Candidate] = []
    for record in passed:
        for item in record.items:
            patients = item.get("patient_ids") or []
            if item["kind"] in ("dicom", "notes") and len(patients) == 1:
                attributes = {k: str(v) for k, v in (item.get("attributes") or {}).items()}
                pool.append(
                    Candidate(item["sha256"], int(item["size"]), item["kind"], patients[0], record.drop, attributes)
                )
    table_kinds = (wanted & set(TABLE_KINDS)) | ({"outcomes"} if spec.cohort.age_band else set())
    pool.extend(_tables(store, passed, table_kinds))
    labels = _labels(store, spec, passed)

    imaging = [c for c in pool if c.modality == "dicom"]
    matching = [c for c in imaging if _imaging_match(spec, c.attributes)]
    cohort = {c.patient_id for c in pool}
    if spec.cohort.has_imaging_criteria:
        cohort &= {c.patient_id for c in matching}
    if spec.cohort.age_band is not None:
        band = spec.cohort.age_band
        ages: dict[str, set[int]] = {}
        for c in matching if spec.cohort.has_imaging_criteria else imaging:
            years = age_years(c.attributes.get("patient_age", ""))
            if years is not None:
                ages.setdefault(c.patient_id, set()).add(years)
        for c in pool:
            if c.modality in AGE_COLUMNS and c.patient_id not in ages:
                for value in c.attributes.get("ages", "").split(","):
                    years = age_years(value)
                    if years is not None:
                        ages.setdefault(c.patient_id, set()).add(years)
        cohort = {p for p in cohort if any(band.contains(a) for a in ages.get(p, ()))}
    if spec.cohort.label_available:
        cohort = {p for p in cohort if labels.get(p) is not None}

    chosen: dict[tuple[str, str], Candidate] = {}
    for c in sorted(pool, key=lambda c: (c.patient_id, c.sha256, c.drop)):
        if c.patient_id not in cohort or c.modality not in wanted:
            continue
        if c.modality == "dicom" and spec.cohort.has_imaging_criteria and not _imaging_match(spec, c.attributes):
            continue
        chosen.setdefault((c.patient_id, c.sha256), c)
    candidates = list(chosen.values())
    drops = sorted({c.drop for c in candidates})
    profiles = {r.profile for r in passed if r.drop in drops}
    if len(profiles) > 1:
        raise BuildError(
            f"the selected drops were de-identified under {len(profiles)} different profiles; "
            "re-run de-identification so one version has one profile"
        )
    return Selection(
        candidates=candidates,
        labels={p: labels.get(p) for p in sorted(cohort)},
        drops=drops,
        profile=next(iter(profiles)) if profiles else None,
    )
