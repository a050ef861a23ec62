"""Slicing a de-identified table into one CSV per patient, so every curated object has exactly one patient."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

PATIENT_COLUMN = "patient_id"


class TableError(ValueError):
    """A de-identified table cannot be sliced (no patient column, ragged rows)."""


@dataclass(frozen=True)
class PatientSlice:
    """The rows of one patient, as CSV bytes with the table's header, in the table's row order."""

    patient_id: str
    data: bytes
    rows: tuple[dict[str, str], ...]


def slice_by_patient(data: bytes, *, where: str = "table") -> list[PatientSlice]:
    """Split CSV ``data`` by its ``patient_id`` column; rows without a patient are left out.

    Promises: the same table always gives the same bytes per patient (``\\n`` line ends, minimal
    quoting, header first), and concatenating a patient's rows over all slices gives back exactly
    the table's rows of that patient.
    """
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    try:
        header = next(reader)
    except StopIteration:
        return []
    if PATIENT_COLUMN not in header:
        raise TableError(f"{where} has no {PATIENT_COLUMN} column")
    index = header.index(PATIENT_COLUMN)
    groups: dict[str, list[list[str]]] = {}
    for number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise TableError(f"{where} row {number} has {len(row)} cells, the header {len(header)}")
        if row[index]:
            groups.setdefault(row[index], []).append(row)
    out = []
    for patient in sorted(groups):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(groups[patient])
        rows = tuple(dict(zip(header, r, strict=True)) for r in groups[patient])
        out.append(PatientSlice(patient, buf.getvalue().encode("utf-8"), rows))
    return out
