"""Tabular extracts: ``labs.csv`` and ``outcomes.csv`` (UTF-8, comma separated, ISO dates)."""

from __future__ import annotations

import csv
import datetime
import io
import random

from clinical_pipelines.synth.canaries import CanaryRecorder
from clinical_pipelines.synth.formats import age_years, iso_date
from clinical_pipelines.synth.plan import TabularSpec

LAB_COLUMNS = ("mrn", "patient_name", "birth_date", "zip", "collected_at", "test_code", "value",
               "unit")  # fmt: skip
OUTCOME_COLUMNS = ("mrn", "admission_date", "discharge_date", "outcome", "age_at_admission")

# LOINC code, unit, low, high, decimals
LAB_TESTS = (
    ("2345-7", "mg/dL", 70.0, 180.0, 0),  # glucose
    ("718-7", "g/dL", 9.0, 16.5, 1),  # hemoglobin
    ("2160-0", "mg/dL", 0.6, 2.4, 2),  # creatinine
    ("2951-2", "mmol/L", 131.0, 146.0, 0),  # sodium
    ("2823-3", "mmol/L", 3.2, 5.4, 1),  # potassium
    ("6690-2", "10*3/uL", 3.5, 16.0, 1),  # leukocytes
    ("777-3", "10*3/uL", 120.0, 420.0, 0),  # platelets
    ("1742-6", "U/L", 8.0, 85.0, 0),  # ALT
    ("4548-4", "%", 4.8, 9.5, 1),  # HbA1c
    ("1988-5", "mg/L", 1.0, 180.0, 1),  # CRP
)


def _csv_bytes(header: tuple[str, ...], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def render_labs(spec: TabularSpec, rec: CanaryRecorder) -> bytes:
    """Return ``labs.csv``: 6-10 results per patient, collected during each admission."""
    rng = random.Random(spec.seed)
    rows: list[list[str]] = []
    taken: set[tuple[str, str, datetime.date]] = set()  # (mrn, test, day) is the table's key: never repeat it
    for adm in spec.admissions:
        p, mrn = adm.patient, adm.patient.mrn
        span = (adm.discharge - adm.admit).days
        for _ in range(rng.randrange(6, 11)):
            code, unit, low, high, decimals = rng.choice(LAB_TESTS)
            collected = adm.admit + datetime.timedelta(days=rng.randrange(span + 1))
            if (mrn, code, collected) in taken:
                continue
            taken.add((mrn, code, collected))
            rows.append([
                rec.plant("mrn", mrn, mrn),
                rec.plant("patient_name", p.full_name, mrn),
                rec.plant("birth_date", iso_date(p.birth_date), mrn),
                rec.plant("zip", p.zip, mrn),
                rec.plant("date", iso_date(collected), mrn),
                code,
                f"{rng.uniform(low, high):.{decimals}f}",
                unit,
            ])  # fmt: skip
    return _csv_bytes(LAB_COLUMNS, rows)


def render_outcomes(spec: TabularSpec, rec: CanaryRecorder) -> bytes:
    """Return ``outcomes.csv``: one row per admission.

    ``age_at_admission`` is written as a plain integer (e.g. ``93``); it is too short to be a
    canary, so de-identification checks must look at that column directly.
    """
    rows: list[list[str]] = []
    for adm in spec.admissions:
        mrn = adm.patient.mrn
        rows.append([
            rec.plant("mrn", mrn, mrn),
            rec.plant("date", iso_date(adm.admit), mrn),
            rec.plant("date", iso_date(adm.discharge), mrn),
            adm.outcome,
            str(age_years(adm.patient.birth_date, adm.admit)),
        ])  # fmt: skip
    return _csv_bytes(OUTCOME_COLUMNS, rows)
