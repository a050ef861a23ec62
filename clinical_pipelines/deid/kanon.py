"""k-anonymity of a released table over its quasi-identifiers, computed with a pandas groupby.

The report holds counts and column names only, never a cell value, so it can go into run metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_K_THRESHOLD = 5


@dataclass(frozen=True)
class KAnonymityReport:
    """Equivalence classes of rows sharing the same quasi-identifier values (nulls form their own value).

    ``k`` is the size (in rows) of the smallest class, 0 for an empty table. ``k_patients`` is the
    smallest number of distinct patients in a class (a stricter view when a patient has many rows),
    or None when the table has no patient column.
    """

    quasi_identifiers: tuple[str, ...]
    threshold: int
    rows: int
    k: int
    classes: int
    classes_below_threshold: int
    rows_below_threshold: int
    k_patients: int | None = None

    @property
    def satisfied(self) -> bool:
        """True when every class has at least ``threshold`` rows (vacuously true for an empty table)."""
        return self.rows_below_threshold == 0

    def to_metadata(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples)."""
        out = asdict(self)
        out["quasi_identifiers"] = list(self.quasi_identifiers)
        out["satisfied"] = self.satisfied
        return out


def k_anonymity(
    frame: Any,
    quasi_identifiers: Sequence[str],
    *,
    threshold: int = DEFAULT_K_THRESHOLD,
    patient_column: str | None = None,
) -> KAnonymityReport:
    """The k-anonymity report of ``frame`` (a pandas DataFrame) over ``quasi_identifiers``.

    With no quasi-identifiers every row is in one class. Raises ValueError (naming only the
    column) when a quasi-identifier or the patient column is not in the frame.
    """
    if threshold < 1:
        raise ValueError("the k-anonymity threshold must be >= 1")
    qis = tuple(quasi_identifiers)
    for column in (*qis, *([patient_column] if patient_column else [])):
        if column not in frame.columns:
            raise ValueError(f"k-anonymity column {column!r} is not in the table")
    rows = len(frame)
    if rows == 0:
        return KAnonymityReport(qis, threshold, 0, 0, 0, 0, 0, 0 if patient_column else None)
    if qis:
        grouped = frame.groupby(list(qis), dropna=False, sort=False)
        sizes = grouped.size()
        patients = grouped[patient_column].nunique() if patient_column else None
    else:
        import pandas as pd

        sizes = pd.Series([rows])
        patients = pd.Series([frame[patient_column].nunique()]) if patient_column else None
    small = sizes[sizes < threshold]
    return KAnonymityReport(
        quasi_identifiers=qis,
        threshold=threshold,
        rows=rows,
        k=int(sizes.min()),
        classes=len(sizes),
        classes_below_threshold=len(small),
        rows_below_threshold=int(small.sum()),
        k_patients=int(patients.min()) if patients is not None else None,
    )
