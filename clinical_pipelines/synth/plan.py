"""The corpus plan: every identifier and event of a corpus, drawn eagerly and cheaply.

Rendering (pixels, note prose, lab values) happens later, per drop, from the per-item
``seed`` values recorded here, so drops can be produced lazily and in any order.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from clinical_pipelines.synth import uids
from clinical_pipelines.synth.models import Patient
from clinical_pipelines.synth.names import (
    FAMILY,
    GIVEN_FEMALE,
    GIVEN_MALE,
    INSTITUTIONS,
    PLACES,
    STREET_SUFFIXES,
    STREETS,
)
from clinical_pipelines.synth.patients import EVENT_END, EVENT_START, random_date

NOTE_KINDS = ("radiology_report", "discharge_summary", "progress_note")
DIAGNOSES = (
    "pneumonia", "heart_failure", "copd", "cellulitis", "pyelonephritis", "stroke",
)  # fmt: skip
OUTCOMES = ("discharged_home", "discharged_home_health", "discharged_snf", "transferred",
            "readmitted_30d", "deceased")  # fmt: skip
OUTCOME_WEIGHTS = (55, 15, 12, 6, 9, 3)


@dataclass(frozen=True)
class Protocol:
    """An imaging protocol: what the study and series headers describe."""

    modality: str
    study_description: str
    series_description: str
    protocol_name: str
    body_part: str
    cpt_code: str
    cpt_meaning: str


PROTOCOLS = {
    "CT": (
        Protocol("CT", "CT CHEST W CONTRAST", "Axial 1.25mm Soft Tissue", "CHEST_ROUTINE_IV",
                 "CHEST", "71260", "CT thorax with contrast"),
        Protocol("CT", "CT CHEST WO CONTRAST", "Axial 2.5mm Standard", "CHEST_NONCON",
                 "CHEST", "71250", "CT thorax without contrast"),
    ),
    "MR": (
        Protocol("MR", "MRI BRAIN WO CONTRAST", "Ax T1 SE", "BRAIN_ROUTINE",
                 "HEAD", "70551", "MRI brain without contrast"),
        Protocol("MR", "MRI BRAIN W WO CONTRAST", "Ax T1 SE Post", "BRAIN_TUMOR_GAD",
                 "HEAD", "70553", "MRI brain without and with contrast"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Clinician:
    """A physician or technologist of a site."""

    given: str
    family: str
    npi: str

    @property
    def full_name(self) -> str:
        """Return ``"Given Family"``."""
        return f"{self.given} {self.family}"

    @property
    def dicom_name(self) -> str:
        """Return the DICOM PN form ``"Family^Given"``."""
        return f"{self.family}^{self.given}"


@dataclass(frozen=True)
class Site:
    """The institution behind one source."""

    source: str
    institution: str
    address: str
    physicians: tuple[Clinician, ...]
    technologists: tuple[Clinician, ...]
    stations: dict[str, str]  # modality -> StationName
    serials: dict[str, str]  # modality -> DeviceSerialNumber


@dataclass(frozen=True)
class Admission:
    """One inpatient stay of a patient."""

    patient: Patient
    admit: datetime.date
    discharge: datetime.date
    outcome: str
    diagnosis: str
    attending: Clinician


@dataclass(frozen=True)
class Exam:
    """An ordered imaging exam (one study); notes reference it by accession number."""

    accession: str
    procedure_id: str
    protocol: Protocol
    date: datetime.date
    time: str  # HHMMSS
    referring: Clinician


@dataclass(frozen=True)
class SeriesSpec:
    """One DICOM series of an exam (one study per series)."""

    patient: Patient
    site: Site
    exam: Exam
    study_uid: str
    series_uid: str
    frame_uid: str
    sop_token: str
    study_id: str
    step_id: str
    series_number: int
    performing: Clinician
    operator: Clinician
    n_slices: int
    rows: int
    columns: int
    seed: int


@dataclass(frozen=True)
class NoteSpec:
    """One clinician note."""

    patient: Patient
    site: Site
    kind: str
    note_date: datetime.date
    author: Clinician
    exam: Exam
    admission: Admission
    seed: int


@dataclass(frozen=True)
class TabularSpec:
    """The CSV tables of one clinical drop."""

    admissions: tuple[Admission, ...]
    seed: int


@dataclass(frozen=True)
class DropPlan:
    """What one drop will contain."""

    source: str
    drop_id: str
    series: tuple[SeriesSpec, ...]
    notes: tuple[NoteSpec, ...]
    tabular: TabularSpec | None


@dataclass(frozen=True)
class PlanParams:
    """Size knobs of a corpus."""

    sources: tuple[str, ...]
    dicom_series_per_patient: int
    slices_per_series: int
    notes_per_patient: int
    rows: int
    columns: int
    series_per_drop: int


class _Ids:
    """Draws identifiers that are unique across the whole corpus."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: set[str] = set()

    def draw(self, prefix: str, digits: int) -> str:
        while True:
            value = f"{prefix}{self._rng.randrange(10 ** (digits - 1), 10**digits)}"
            if value not in self._seen:
                self._seen.add(value)
                return value


def _clinician(rng: random.Random, ids: _Ids) -> Clinician:
    given = rng.choice(GIVEN_FEMALE + GIVEN_MALE)
    return Clinician(given=given, family=rng.choice(FAMILY), npi=ids.draw(rng.choice("12"), 9))


def _site(rng: random.Random, ids: _Ids, index: int, source: str) -> Site:
    name = INSTITUTIONS[index % len(INSTITUTIONS)]
    if index >= len(INSTITUTIONS):
        name = f"{name} Campus {index // len(INSTITUTIONS) + 1}"
    initials = "".join(w[0] for w in name.split() if w[0].isupper())[:6]
    zip3, city, state = rng.choice(PLACES)
    street = f"{rng.randrange(1, 999)} {rng.choice(STREETS)} {rng.choice(STREET_SUFFIXES)}"
    return Site(
        source=source,
        institution=name,
        address=f"{street}, {city}, {state} {zip3}{rng.randrange(100):02d}",
        physicians=tuple(_clinician(rng, ids) for _ in range(4)),
        technologists=tuple(_clinician(rng, ids) for _ in range(2)),
        stations={m: f"{initials}-{m}{rng.randrange(1, 20):02d}" for m in ("CT", "MR")},
        serials={m: ids.draw("SN", 8) for m in ("CT", "MR")},
    )


def _admission(rng: random.Random, patient: Patient, site: Site) -> Admission:
    admit = random_date(rng, EVENT_START, EVENT_END - datetime.timedelta(days=30))
    return Admission(
        patient=patient,
        admit=admit,
        discharge=admit + datetime.timedelta(days=rng.randrange(2, 13)),
        outcome=rng.choices(OUTCOMES, weights=OUTCOME_WEIGHTS)[0],
        diagnosis=rng.choice(DIAGNOSES),
        attending=rng.choice(site.physicians),
    )


def _exam(rng: random.Random, ids: _Ids, modality: str, date: datetime.date, site: Site) -> Exam:
    return Exam(
        accession=ids.draw(f"A{date.year % 100:02d}", 7),
        procedure_id=ids.draw("RP", 8),
        protocol=rng.choice(PROTOCOLS[modality]),
        date=date,
        time=f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
        referring=rng.choice(site.physicians),
    )


def _series(rng: random.Random, ids: _Ids, patient: Patient, site: Site, exam: Exam, p: PlanParams) -> SeriesSpec:
    return SeriesSpec(
        patient=patient,
        site=site,
        exam=exam,
        study_uid=uids.make_uid(rng, uids.STUDY),
        series_uid=uids.make_uid(rng, uids.SERIES),
        frame_uid=uids.make_uid(rng, uids.FRAME_OF_REFERENCE),
        sop_token=uids.make_uid(rng, uids.INSTANCE),
        study_id=ids.draw("ST", 6),
        step_id=ids.draw("SPS", 8),
        series_number=rng.randrange(2, 9),
        performing=rng.choice(site.physicians),
        operator=rng.choice(site.technologists),
        n_slices=p.slices_per_series,
        rows=p.rows,
        columns=p.columns,
        seed=rng.getrandbits(63),
    )


def _chunks(items: list[SeriesSpec], size: int) -> list[tuple[SeriesSpec, ...]]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def build_plan(rng: random.Random, patients: list[Patient], p: PlanParams) -> list[DropPlan]:
    """Assign patients to sources round-robin and lay out each source's drops.

    Per source: imaging drops (at most ``series_per_drop`` series each, CT and MR
    alternating), then one clinical drop with notes and the lab/outcome tables.
    """
    ids = _Ids(rng)
    drops: list[DropPlan] = []
    for s_idx, source in enumerate(p.sources):
        site = _site(rng, ids, s_idx, source)
        members = patients[s_idx :: len(p.sources)]
        admissions = [_admission(rng, patient, site) for patient in members]
        series: list[SeriesSpec] = []
        notes: list[NoteSpec] = []
        for patient, adm in zip(members, admissions, strict=True):
            exams: list[Exam] = []
            for j in range(p.dicom_series_per_patient):
                modality = "CT" if len(series) % 2 == 0 else "MR"
                if j == 0:
                    date = adm.admit + datetime.timedelta(days=rng.randrange(2))
                else:
                    date = random_date(rng, EVENT_START, EVENT_END)
                exam = _exam(rng, ids, modality, date, site)
                exams.append(exam)
                series.append(_series(rng, ids, patient, site, exam, p))
            if not exams:  # notes still cite an imaging exam, just one without images
                exams.append(_exam(rng, ids, "CT", adm.admit, site))
            for j in range(p.notes_per_patient):
                kind = NOTE_KINDS[j % len(NOTE_KINDS)]
                exam = exams[(j // len(NOTE_KINDS)) % len(exams)]
                if kind == "radiology_report":
                    note_date = exam.date
                elif kind == "discharge_summary":
                    note_date = adm.discharge
                else:
                    note_date = adm.admit + datetime.timedelta(
                        days=rng.randrange(1, (adm.discharge - adm.admit).days + 1)
                    )
                author = rng.choice(site.physicians)
                notes.append(NoteSpec(patient, site, kind, note_date, author, exam, adm, rng.getrandbits(63)))
        n = 0
        for chunk in _chunks(series, p.series_per_drop):
            n += 1
            drops.append(DropPlan(source, f"drop-{n:04d}", chunk, (), None))
        if members:
            n += 1
            tabular = TabularSpec(tuple(admissions), rng.getrandbits(63))
            drops.append(DropPlan(source, f"drop-{n:04d}", (), tuple(notes), tabular))
    return drops
