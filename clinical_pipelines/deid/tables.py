"""De-identification of parsed tables (labs, outcomes) under a declared per-column policy.

Every column of a table kind (named as in :mod:`clinical_pipelines.validate.tables`) has a role:

``patient_key``
    The MRN. Replaced by a ``patient_id`` column holding :meth:`Pseudonymizer.patient_id` (the same
    ``PSN-…`` id DICOM and notes give that patient); the MRN itself is dropped.
``drop``
    Direct identifiers (names, SSN, phone, e-mail, address): removed.
``date``
    Moved by the patient's shift (:meth:`Pseudonymizer.shift_date`, the same shift as in DICOM and
    notes) and written as ISO ``YYYY-MM-DD`` (any time of day is dropped). A date that cannot be
    parsed, or whose row has no patient key (so no shift), is blanked.
``birth_date``
    Dropped. It is replaced by an age in whole years at the row's reference date (for labs,
    ``collected_at``), top-coded like any age: Safe Harbor forbids birth dates and ages over 89 but
    allows other ages. The age is computed from the original dates; as both dates would move by the
    same shift it equals the age between the released (shifted) dates, Feb 29 aside. No birth year
    is released, so the birth date cannot be re-derived beyond what the age says.
``zip``
    Safe Harbor generalisation: the first three digits (column renamed ``zip3``), or ``000`` for the
    ZIP3 prefixes whose population was 20,000 or less in the 2000 census. Anything that is not a
    5-digit, ZIP+4 or 3-digit ZIP is blanked.
``age``
    Whole years as a string; 90 and above become ``90+``; unparseable or negative ages are blanked.
``keep``
    Kept (test codes, values, units, outcomes, sex) when the cell has the column's closed form
    declared by the schema (LOINC, UCUM, number, snake_case code, administrative sex: see
    :mod:`clinical_pipelines.validate.forms`); a cell outside its form may be free text (a name typed
    into ``unit``) and is redacted (blank, counted in ``cells_redacted``).
``free_text``
    The schema's free-text columns (``comment``): each cell goes through the notes engine with the
    row's patient key (names replaced, dates shifted like the patient's), or, with no notes engine,
    the column is dropped.

Columns the policy does not name are dropped (fail closed) and listed in the report. The report
(and every exception message here) holds counts and column names only, never a cell value.

CSV output follows the OWASP CSV-injection rule: a text cell whose first character is ``=``, ``+``,
``-``, ``@``, tab or carriage return (a spreadsheet would run it as a formula) gets a leading single
quote. Number cells (floats and ints, as the schema types ``value`` and ages) are numbers, not
formulas, and are written as they are, so ``-3.2`` stays ``-3.2``; the same text in a text column
becomes ``'-3.2``.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clinical_pipelines.deid.kanon import DEFAULT_K_THRESHOLD, KAnonymityReport, k_anonymity
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.validate.dicom import ParseFailure
from clinical_pipelines.validate.forms import conforms
from clinical_pipelines.validate.tables import LABS, OUTCOMES, TableSchema, parse_table

if TYPE_CHECKING:
    from clinical_pipelines.deid.notes import NoteDeidentifier

ROLES = ("patient_key", "drop", "date", "birth_date", "zip", "age", "keep", "free_text")

PATIENT_ID_COLUMN = "patient_id"
ZIP3_COLUMN = "zip3"
AGE_TOP_CODE = 90
AGE_TOP_CODED = "90+"

#: ZIP3 prefixes with 20,000 or fewer people (2000 census), released as ``000`` under Safe Harbor.
RESTRICTED_ZIP3 = frozenset(
    ("036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890",
     "893")
)  # fmt: skip

#: Direct identifiers dropped wherever they appear (declared, so they are reported as such, not as unknown).
DIRECT_IDENTIFIERS = ("patient_name", "first_name", "last_name", "ssn", "phone", "email", "address")

_ZIP_RE = re.compile(r"(\d{5})(?:-?\d{4})?|(\d{3})")


@dataclass(frozen=True)
class TablePolicy:
    """The de-identification policy of one table kind.

    ``age_reference`` is the date column at which the ``birth_date`` column's age is taken; the age
    goes into ``age_column``. ``quasi_identifiers`` are output columns for the k-anonymity report
    (those absent from a given table are skipped).
    """

    name: str
    roles: Mapping[str, str]
    age_reference: str | None = None
    age_column: str = "age"
    quasi_identifiers: tuple[str, ...] = ()
    forms: Mapping[str, str] = field(default_factory=dict)  # column -> closed form its kept cells must have

    def __post_init__(self) -> None:
        bad = sorted(c for c, r in self.roles.items() if r not in ROLES)
        if bad:
            raise ValueError(f"policy {self.name}: unknown roles for columns {bad}")
        if sum(r == "patient_key" for r in self.roles.values()) != 1:
            raise ValueError(f"policy {self.name}: exactly one patient_key column is required")
        if any(r == "birth_date" for r in self.roles.values()) and self.roles.get(self.age_reference or "") != "date":
            raise ValueError(f"policy {self.name}: a birth_date column needs a date column as age_reference")

    def output_name(self, column: str) -> str:
        """The name ``column`` has in the released table."""
        role = self.roles[column]
        return {"patient_key": PATIENT_ID_COLUMN, "zip": ZIP3_COLUMN, "birth_date": self.age_column}.get(role, column)


def _policy(schema: TableSchema, roles: Mapping[str, str], **kwargs: Any) -> TablePolicy:
    full = ({c: "drop" for c in DIRECT_IDENTIFIERS} | {"sex": "keep"} | dict.fromkeys(schema.free_text, "free_text")
            | dict(roles))  # fmt: skip
    missing = [c for c in schema.columns if c not in full]
    if missing:  # every declared column must have a role
        raise ValueError(f"policy {schema.name}: no role for columns {missing}")
    return TablePolicy(name=schema.name, roles=full, forms={"sex": "sex", **schema.forms}, **kwargs)


LABS_POLICY = _policy(
    LABS,
    {
        "mrn": "patient_key",
        "patient_name": "drop",
        "birth_date": "birth_date",
        "zip": "zip",
        "collected_at": "date",
        "test_code": "keep",
        "value": "keep",
        "unit": "keep",
    },
    age_reference="collected_at",
    age_column="age_at_collection",
    quasi_identifiers=(ZIP3_COLUMN, "age_at_collection", "sex"),
)
OUTCOMES_POLICY = _policy(
    OUTCOMES,
    {
        "mrn": "patient_key",
        "admission_date": "date",
        "discharge_date": "date",
        "outcome": "keep",
        "age_at_admission": "age",
    },
    quasi_identifiers=("age_at_admission", "outcome", "sex"),
)
POLICIES: dict[str, TablePolicy] = {p.name: p for p in (LABS_POLICY, OUTCOMES_POLICY)}


@dataclass(frozen=True)
class TableDeidReport:
    """What de-identification did to one table: counts and column names only."""

    table: str
    rows: int
    columns_out: tuple[str, ...]
    columns_dropped: tuple[str, ...]  # declared drops, birth dates and unknown columns, in input order
    columns_unknown: tuple[str, ...]  # not named by the policy (also in columns_dropped)
    columns_missing: tuple[str, ...]  # named by the table's schema but absent from the input
    columns_pseudonymized: tuple[str, ...]
    rows_without_patient_key: int
    dates_shifted: int
    dates_blanked: int  # non-empty date cells not released (unparseable, or no patient key)
    zip_generalized: int  # ZIPs released as their first three digits
    zip_restricted: int  # ZIPs released as 000
    zip_blanked: int  # non-empty ZIP cells that were not a ZIP
    ages_derived: int  # ages computed from a birth date
    ages_top_coded: int
    ages_blanked: int  # non-empty age / birth-date cells not released
    kanon: KAnonymityReport
    cells_redacted: int = 0  # kept-column cells outside their column's closed form
    free_text_cells: int = 0  # cells de-identified by the notes engine
    columns_free_text: tuple[str, ...] = ()  # free-text columns released after the notes engine

    def to_metadata(self) -> dict[str, Any]:
        """A JSON-ready dict for run metadata."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, KAnonymityReport):
                value = value.to_metadata()
            out[name] = value
        return out


@dataclass
class TableDeidResult:
    """The released table (a pandas DataFrame of strings, None for blanks) and its report."""

    frame: Any
    report: TableDeidReport


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NaT or value is pd.NA
    except ImportError:  # pragma: no cover
        return False


def _text(value: Any) -> str | None:
    """A cell as stripped text (integral floats without ``.0``), or None when empty."""
    if _is_null(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _as_date(value: Any) -> datetime.date | None:
    """A cell as a date: datetime-like values, or ISO 8601 text (a time part is ignored)."""
    if _is_null(value):
        return None
    if isinstance(value, datetime.datetime):  # includes pandas Timestamp
        return value.date()
    if isinstance(value, datetime.date):
        return value
    text = _text(value)
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).date()
    except ValueError:
        return None


def generalize_zip(value: Any) -> str | None:
    """Safe Harbor ZIP3 of a ZIP (5-digit, ZIP+4, an integer that lost its leading zeros, or a ZIP3).

    Returns ``000`` for restricted prefixes and None for anything that is not a ZIP.
    """
    if _is_null(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
        if not 0 <= value <= 99999:
            return None
        value = f"{value:05d}"
    match = _ZIP_RE.fullmatch(str(value).strip())
    if match is None:
        return None
    zip3 = (match.group(1) or match.group(2))[:3]
    return "000" if zip3 in RESTRICTED_ZIP3 else zip3


def generalize_age(value: Any) -> str | None:
    """Whole years as a string, ``90+`` from 90 up; None for empty, unparseable or negative ages."""
    if _is_null(value):
        return None
    try:
        years = float(_text(value) or "nan") if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        return None
    if math.isnan(years) or years < 0 or math.isinf(years):
        return None
    return AGE_TOP_CODED if years >= AGE_TOP_CODE else str(math.floor(years))


def age_in_years(birth: datetime.date, at: datetime.date) -> int:
    """Completed years between ``birth`` and ``at``."""
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _resolve_policy(kind: str | TableSchema | TablePolicy) -> TablePolicy:
    if isinstance(kind, TablePolicy):
        return kind
    name = kind.name if isinstance(kind, TableSchema) else kind
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"no de-identification policy for table kind {name!r}") from None


def deidentify_table(
    frame: Any,
    kind: str | TableSchema | TablePolicy,
    pseudonymizer: Pseudonymizer,
    *,
    quasi_identifiers: Sequence[str] | None = None,
    k_threshold: int = DEFAULT_K_THRESHOLD,
    notes: NoteDeidentifier | None = None,
) -> TableDeidResult:
    """De-identify ``frame`` (a pandas DataFrame, typed as ``parse_table`` makes it, or all strings).

    ``kind`` names the table schema (``"labs"``, ``"outcomes"``) or is a policy. Rows stay in
    input order, one output row per input row. ``quasi_identifiers`` (output column names) override
    the policy's for the k-anonymity report; unlike the policy's, each must be in the output.
    Free-text columns go through ``notes``, or are dropped when it is None.
    """
    return _deidentify(frame, _resolve_policy(kind), pseudonymizer, quasi_identifiers, k_threshold, (), notes)


def _deidentify(
    frame: Any,
    policy: TablePolicy,
    pz: Pseudonymizer,
    quasi_identifiers: Sequence[str] | None,
    k_threshold: int,
    extra_unknown: Sequence[str],
    notes: NoteDeidentifier | None = None,
) -> TableDeidResult:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"{policy.name} table has duplicate column names")
    roles = {c: policy.roles.get(c) for c in columns}
    unknown = [c for c in columns if roles[c] is None] + [c for c in extra_unknown if c not in columns]
    key_column = next(c for c, r in policy.roles.items() if r == "patient_key")
    schema = next((s for s in (LABS, OUTCOMES) if s.name == policy.name), None)
    declared = list(schema.columns) if schema else [c for c, r in policy.roles.items() if r != "drop"]
    missing = [c for c in declared if c not in columns]
    n = len(frame)
    counts = dict.fromkeys(
        ("dates_shifted", "dates_blanked", "zip_generalized", "zip_restricted", "zip_blanked", "ages_derived",
         "ages_top_coded", "ages_blanked", "cells_redacted", "free_text_cells"),
        0,
    )  # fmt: skip
    free_text: list[str] = []

    # Patient keys: text, None when empty. Without a key a row gets no pseudonym and no shift.
    keys: list[str | None] = [_text(v) for v in frame[key_column]] if key_column in columns else [None] * n
    patient_ids = [pz.patient_id(k) if k else None for k in keys]

    out: dict[str, list[Any]] = {PATIENT_ID_COLUMN: patient_ids}
    dropped: list[str] = []
    for column in columns:
        role = roles[column]
        values = list(frame[column])
        if role is None or role == "drop" or (role == "free_text" and notes is None):
            dropped.append(column)
        elif role == "free_text":
            assert notes is not None
            out[column] = _free_text(values, keys, notes, counts)
            free_text.append(column)
        elif role == "patient_key":
            continue
        elif role == "date":
            released: list[str | None] = []
            for key, value in zip(keys, values, strict=True):
                day = _as_date(value)
                if day is not None and key:
                    released.append(pz.shift_date(day, key).isoformat())
                    counts["dates_shifted"] += 1
                else:
                    released.append(None)
                    counts["dates_blanked"] += _text(value) is not None
            out[column] = released
        elif role == "zip":
            zips = [generalize_zip(v) for v in values]
            for value, zip3 in zip(values, zips, strict=True):
                if zip3 == "000":
                    counts["zip_restricted"] += 1
                elif zip3 is not None:
                    counts["zip_generalized"] += 1
                elif _text(value) is not None:
                    counts["zip_blanked"] += 1
            out[ZIP3_COLUMN] = zips
        elif role == "age":
            out[column] = _released_ages(values, values, counts)
        elif role == "birth_date":
            dropped.append(column)
            reference = policy.age_reference or ""
            refs = list(frame[reference]) if reference in columns else [None] * n
            ages: list[Any] = []
            for birth, at in zip(values, refs, strict=True):
                b, a = _as_date(birth), _as_date(at)
                ages.append(age_in_years(b, a) if b is not None and a is not None else None)
            counts["ages_derived"] += sum(a is not None for a in ages)
            out[policy.age_column] = _released_ages(ages, values, counts)
        else:  # keep, within the column's closed form
            form = policy.forms.get(column)
            out[column] = values if form is None else _in_form(values, form, counts)

    released_frame = pd.DataFrame(out, index=range(n), dtype=object)
    if quasi_identifiers is None:
        qis: tuple[str, ...] = tuple(q for q in policy.quasi_identifiers if q in released_frame.columns)
    else:
        qis = tuple(quasi_identifiers)
        missing_qis = [q for q in qis if q not in released_frame.columns]
        if missing_qis:
            raise ValueError(f"quasi-identifiers not in the released {policy.name} table: {missing_qis}")
    kanon = k_anonymity(released_frame, qis, threshold=k_threshold, patient_column=PATIENT_ID_COLUMN)
    report = TableDeidReport(
        table=policy.name,
        rows=n,
        columns_out=tuple(released_frame.columns),
        columns_dropped=tuple(dropped) + tuple(c for c in extra_unknown if c not in columns),
        columns_unknown=tuple(unknown),
        columns_missing=tuple(missing),
        columns_pseudonymized=(key_column,) if key_column in columns else (),
        rows_without_patient_key=sum(k is None for k in keys),
        kanon=kanon,
        columns_free_text=tuple(free_text),
        **counts,
    )
    return TableDeidResult(frame=released_frame, report=report)


def _in_form(values: list[Any], form: str, counts: dict[str, int]) -> list[Any]:
    """``values`` with every cell outside ``form`` blanked (numbers stay numbers; text is checked as text)."""
    released: list[Any] = []
    for value in values:
        if _is_null(value):
            released.append(None)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            ok = form == "number" and math.isfinite(float(value))
            released.append(value if ok else None)
            counts["cells_redacted"] += not ok
        elif conforms(form, str(value)):
            released.append(str(value).strip())
        else:
            released.append(None)
            counts["cells_redacted"] += 1
    return released


def _free_text(values: list[Any], keys: list[str | None], notes: NoteDeidentifier, counts: dict[str, int]) -> list[Any]:
    """Each non-empty cell de-identified by the notes engine, dates shifted by the row's patient."""
    rows = [i for i, v in enumerate(values) if _text(v) is not None]
    results = notes.deidentify_many([str(values[i]) for i in rows], patient_keys=[keys[i] for i in rows])
    released: list[Any] = [None] * len(values)
    for i, result in zip(rows, results, strict=True):
        released[i] = result.text
    counts["free_text_cells"] += len(rows)
    return released


def _released_ages(ages: list[Any], originals: list[Any], counts: dict[str, int]) -> list[str | None]:
    released = [generalize_age(a) for a in ages]
    for age, original in zip(released, originals, strict=True):
        if age == AGE_TOP_CODED:
            counts["ages_top_coded"] += 1
        elif age is None and _text(original) is not None:
            counts["ages_blanked"] += 1
    return released


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell as a spreadsheet will not execute it: text starting like a formula gets a leading ``'``
    (OWASP CSV injection); numbers are returned as they are; nulls become blanks."""
    if _is_null(value):
        return ""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def table_csv_bytes(frame: Any) -> bytes:
    """A released table as UTF-8 CSV: header, comma, ``\\n`` line ends, blanks for nulls, formula-safe cells."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_safe(str(c)) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        writer.writerow([csv_safe(v) for v in row])
    return buf.getvalue().encode("utf-8")


def deidentify_csv(
    data: bytes,
    pseudonymizer: Pseudonymizer,
    *,
    quasi_identifiers: Sequence[str] | None = None,
    k_threshold: int = DEFAULT_K_THRESHOLD,
    notes: NoteDeidentifier | None = None,
) -> tuple[bytes, TableDeidResult]:
    """Parse ``data`` with :func:`parse_table`, de-identify it, and return the released CSV and the result.

    Header columns the schema does not declare (``parse_table`` leaves them out) are reported as
    unknown and dropped. Raises ValueError carrying the parse-failure reason (no values) when the
    table cannot be parsed.
    """
    parsed = parse_table(data)
    if isinstance(parsed, ParseFailure):
        raise ValueError(f"table could not be parsed: {parsed.reason}")
    policy = _resolve_policy(parsed.schema.name)
    header = [h.strip() for h in next(csv.reader([parsed.lines[0]]))]
    extra = [h for h in header if h and h not in parsed.frame.columns]
    result = _deidentify(parsed.frame, policy, pseudonymizer, quasi_identifiers, k_threshold, extra, notes)
    return table_csv_bytes(result.frame), result


def deidentify_csv_checked(
    data: bytes, pseudonymizer: Pseudonymizer, *, residual_scan: bool = True
) -> tuple[bytes, TableDeidResult, dict[str, int]]:
    """:func:`deidentify_csv` with the notes engine for free-text columns, then the pipeline's residual scan.

    Returns the released CSV, the result and the residual findings per kind (empty: clean, or
    ``residual_scan`` off); a caller must not release a table with findings.
    """
    from clinical_pipelines.deid.findings import table_findings
    from clinical_pipelines.deid.notes import NoteDeidentifier

    parsed = parse_table(data)
    if isinstance(parsed, ParseFailure):
        raise ValueError(f"table could not be parsed: {parsed.reason}")
    notes = NoteDeidentifier(pseudonymizer)
    out, result = deidentify_csv(data, pseudonymizer, notes=notes)
    if not residual_scan:
        return out, result, {}
    policy = _resolve_policy(parsed.schema.name)
    findings = table_findings(parsed.frame, result, policy, out, notes.analyze_many)
    return out, result, dict(findings)
