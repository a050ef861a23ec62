"""Clinician notes (radiology reports, discharge summaries, progress notes) as UTF-8 text.

Every identifier is routed through :meth:`CanaryRecorder.plant` at the spot it is written,
so the recorded canaries are exactly the identifiers in the text.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

from clinical_pipelines.synth.canaries import CanaryRecorder
from clinical_pipelines.synth.formats import (
    age_years,
    iso_date,
    long_date,
    short_date,
    us_date,
)
from clinical_pipelines.synth.note_text import (
    ALLERGIES,
    DIAGNOSES,
    EXAM,
    FINDINGS,
    IMPRESSION,
    INSTRUCTIONS,
    PAST_HISTORY,
    PLAN,
    RADIOLOGY_CONTRAST,
    RECOMMENDATIONS,
    SOCIAL,
    TECHNIQUE,
)
from clinical_pipelines.synth.plan import NoteSpec

TITLES = {
    "radiology_report": "RADIOLOGY REPORT",
    "discharge_summary": "DISCHARGE SUMMARY",
    "progress_note": "PROGRESS NOTE",
}


class _Writer:
    """Plants identifiers of one note's patient into text fragments."""

    def __init__(self, spec: NoteSpec, rec: CanaryRecorder) -> None:
        self.spec, self.rec, self.mrn = spec, rec, spec.patient.mrn

    def date(self, d: datetime.date, fmt: Callable[[datetime.date], str], kind: str = "date") -> str:
        return self.rec.plant(kind, fmt(d), self.mrn)

    def pid(self, kind: str, value: str) -> str:
        return self.rec.plant(kind, value, self.mrn)

    def doctor(self, full_name: str) -> str:
        return "Dr. " + self.rec.plant("physician_name", full_name, None)

    def age_phrase(self, on: datetime.date) -> str:
        p = self.spec.patient
        age = age_years(p.birth_date, on)
        text = f"{age}-year-old"
        if age > 89:
            self.rec.plant("age_over_89", text, self.mrn)
        return f"{text} {'woman' if p.sex == 'F' else 'man'}"

    def surname(self) -> str:
        p = self.spec.patient
        return f"{'Ms.' if p.sex == 'F' else 'Mr.'} {self.pid('patient_name', p.family)}"


def _header(w: _Writer) -> list[str]:
    s, p = w.spec, w.spec.patient
    return [
        w.rec.plant("institution", s.site.institution, None),
        w.rec.plant("address", s.site.address, None),
        TITLES[s.kind],
        "",
        f"Patient: {w.pid('patient_name', p.full_name)}",
        f"MRN: {w.pid('mrn', p.mrn)}",
        f"DOB: {w.date(p.birth_date, us_date, 'birth_date')}",
        f"SSN: {w.pid('ssn', p.ssn)}",
        f"Address: {w.pid('address', p.address)}, {p.city}, {p.state} {w.pid('zip', p.zip)}",
        f"Phone: {w.pid('phone', p.phone)}",
        f"E-mail: {w.pid('email', p.email)}",
        f"Date of service: {w.date(s.note_date, iso_date)}",
        f"Referring physician: {w.doctor(s.exam.referring.full_name)}",
        f"Accession number: {w.pid('accession', s.exam.accession)}",
        "",
    ]


def _radiology(w: _Writer, rng: random.Random) -> list[str]:
    s, exam = w.spec, w.spec.exam
    mod = exam.protocol.modality
    findings = rng.sample(FINDINGS[mod], k=len(FINDINGS[mod]))
    return [
        f"EXAM: {exam.protocol.study_description}, performed {w.date(exam.date, long_date)}.",
        f"CLINICAL INDICATION: {w.age_phrase(exam.date)} admitted with "
        f"{DIAGNOSES[s.admission.diagnosis]['name']}; evaluate for complications.",
        f"TECHNIQUE: {TECHNIQUE[mod]} {RADIOLOGY_CONTRAST[mod]}",
        f"RELEVANT HISTORY: {' '.join(rng.sample(PAST_HISTORY, k=2))}",
        f"COMPARISON: None available at {s.site.institution} prior to {w.date(exam.date, short_date)}.",
        "",
        "FINDINGS:",
        *findings,
        "",
        "IMPRESSION:",
        *(f"{i}. {line}" for i, line in enumerate(IMPRESSION[mod], start=1)),
        "",
        f"RECOMMENDATIONS: {' '.join(rng.sample(RECOMMENDATIONS, k=2))}",
        f"Findings were communicated to {w.doctor(exam.referring.full_name)} by telephone on "
        f"{w.date(exam.date, us_date)}. {w.surname()} was informed of the results.",
    ]


def _discharge(w: _Writer, rng: random.Random) -> list[str]:
    s, adm = w.spec, w.spec.admission
    dx = DIAGNOSES[adm.diagnosis]
    course = rng.sample(dx["course"], k=4)
    return [
        f"Admission date: {w.date(adm.admit, iso_date)}",
        f"Discharge date: {w.date(adm.discharge, iso_date)}",
        f"Attending: {w.doctor(adm.attending.full_name)}",
        "",
        f"HISTORY: {w.surname()} is a {w.age_phrase(adm.admit)} who presented to "
        f"{s.site.institution} on {w.date(adm.admit, long_date)} with {dx['presentation']}.",
        f"PAST MEDICAL HISTORY: {' '.join(rng.sample(PAST_HISTORY, k=3))}",
        f"ALLERGIES: {rng.choice(ALLERGIES)}",
        f"SOCIAL HISTORY: {rng.choice(SOCIAL)}",
        "",
        f"HOSPITAL COURSE: {' '.join(course)} Imaging under accession {s.exam.accession} on "
        f"{w.date(s.exam.date, short_date)} was reviewed with radiology.",
        "",
        f"DISCHARGE DIAGNOSIS: {dx['name'].capitalize()}.",
        "DISCHARGE MEDICATIONS:",
        *(f"- {m}" for m in dx["medications"]),
        "",
        f"FOLLOW-UP: {dx['follow_up']} The patient may be reached at {s.patient.phone} or {s.patient.email}.",
        f"INSTRUCTIONS: {' '.join(rng.sample(INSTRUCTIONS, k=3))}",
        f"Discharged on {w.date(adm.discharge, long_date)} ({w.date(adm.discharge, short_date)}) in stable condition.",
    ]


def _progress(w: _Writer, rng: random.Random) -> list[str]:
    s, adm = w.spec, w.spec.admission
    dx = DIAGNOSES[adm.diagnosis]
    day = (s.note_date - adm.admit).days + 1
    vitals = (
        f"T {rng.uniform(36.4, 38.2):.1f} C, HR {rng.randrange(62, 108)}, "
        f"BP {rng.randrange(104, 152)}/{rng.randrange(58, 92)}, "
        f"RR {rng.randrange(14, 24)}, SpO2 {rng.randrange(90, 100)} percent"
    )
    return [
        f"Hospital day {day} for {dx['name']}, admitted {w.date(adm.admit, short_date)}.",
        "",
        f"SUBJECTIVE: {w.surname()} is a {w.age_phrase(s.note_date)} seen at the bedside on "
        f"{w.date(s.note_date, long_date)}. Reports feeling somewhat better overnight, "
        "tolerating diet, and ambulating to the bathroom with assistance.",
        f"Background: {' '.join(rng.sample(PAST_HISTORY, k=2))} Allergies: {rng.choice(ALLERGIES)}",
        f"OBJECTIVE: {vitals}.",
        *rng.sample(EXAM, k=4),
        f"Imaging (accession {s.exam.accession}) from {w.date(s.exam.date, us_date)} reviewed.",
        "",
        f"ASSESSMENT: {dx['name'].capitalize()}, improving. {rng.choice(dx['course'])}",
        "PLAN:",
        *(f"- {line}" for line in rng.sample(PLAN, k=4)),
        f"- Update family contact at {s.patient.phone} before {w.date(s.note_date, short_date)} evening rounds.",
    ]


_BODIES = {"radiology_report": _radiology, "discharge_summary": _discharge,
           "progress_note": _progress}  # fmt: skip


def render_note(spec: NoteSpec, rec: CanaryRecorder) -> bytes:
    """Return the UTF-8 text of the note described by ``spec``, recording what it plants."""
    rng = random.Random(spec.seed)
    w = _Writer(spec, rec)
    lines = _header(w) + _BODIES[spec.kind](w, rng)
    lines += [
        "",
        f"Electronically signed by {w.doctor(spec.author.full_name)} on "
        f"{w.date(spec.note_date, us_date)} ({w.date(spec.note_date, long_date)}, "
        f"{w.date(spec.note_date, short_date)}) at {spec.site.institution}.",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
