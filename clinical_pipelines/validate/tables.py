"""Declared schemas for tabular drops, and parsing a CSV against them with pandas."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from clinical_pipelines.limits import TABLE_TOO_LARGE, Limits
from clinical_pipelines.validate.dicom import ParseFailure


@dataclass(frozen=True)
class TableSchema:
    """A table kind: its columns with types, its key, and its value rules."""

    name: str
    columns: dict[str, str]  # column -> "string" | "date" | "float" | "int"
    key: tuple[str, ...]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ordered_dates: tuple[tuple[str, str], ...] = ()  # (later, earlier)
    # Closed forms of text and number columns (see clinical_pipelines.validate.forms): what de-identification
    # may release as is. A cell outside its column's form is redacted, not passed through.
    forms: dict[str, str] = field(default_factory=dict)
    # Optional free-text columns: read when present, de-identified with the notes engine (or dropped).
    free_text: tuple[str, ...] = ()

    @property
    def date_columns(self) -> tuple[str, ...]:
        """Columns holding dates (checked: parseable and not in the future)."""
        return tuple(c for c, t in self.columns.items() if t == "date")


LABS = TableSchema(
    name="labs",
    columns={
        "mrn": "string",
        "patient_name": "string",
        "birth_date": "date",
        "zip": "string",
        "collected_at": "date",
        "test_code": "string",
        "value": "float",
        "unit": "string",
    },
    key=("mrn", "test_code", "collected_at"),
    ranges={"value": (-10_000.0, 100_000.0)},
    forms={"test_code": "loinc", "value": "number", "unit": "ucum"},
    free_text=("comment",),
)
OUTCOMES = TableSchema(
    name="outcomes",
    columns={
        "mrn": "string",
        "admission_date": "date",
        "discharge_date": "date",
        "outcome": "string",
        "age_at_admission": "int",
    },
    key=("mrn", "admission_date"),
    ranges={"age_at_admission": (0, 130)},
    ordered_dates=(("discharge_date", "admission_date"),),
    forms={"outcome": "token", "age_at_admission": "number"},
    free_text=("comment",),
)
SCHEMAS = (LABS, OUTCOMES)


@dataclass
class ParsedTable:
    """A table parsed against its schema: typed columns, plus the original text rows by index."""

    schema: TableSchema
    frame: Any  # pandas DataFrame, typed
    lines: list[str]  # header + data lines, to quarantine rejected rows as CSV


def _pick_schema(header: list[str]) -> TableSchema | None:
    best = max(SCHEMAS, key=lambda s: len(set(s.columns) & set(header)))
    return best if len(set(best.columns) & set(header)) >= 2 else None


def parse_table(data: bytes, *, limits: Limits | None = None) -> ParsedTable | ParseFailure:
    """Parse a comma-separated UTF-8 CSV against the schema its header names.

    Values that do not parse as their column's type become nulls, which the
    suite's not-null rules then report per row.
    """
    import pandas as pd

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ParseFailure("bad_encoding", "table is not UTF-8")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return ParseFailure("empty_table", "table has no header row")
    header = [h.strip() for h in lines[0].split(",")]
    if len(header) == 1 and any(d in lines[0] for d in (";", "\t", "|")):
        return ParseFailure("wrong_delimiter", "table is not comma-separated")
    schema = _pick_schema(header)
    if schema is None:
        return ParseFailure("unknown_table_schema", "header matches no declared table schema")
    missing = [c for c in schema.columns if c not in header]
    if missing:
        return ParseFailure("missing_columns", f"{schema.name} table lacks columns: {', '.join(missing)}")
    max_cells = (limits or Limits()).max_table_cells
    if (len(lines) - 1) * len(header) > max_cells:  # counted before pandas allocates anything
        return ParseFailure(
            TABLE_TOO_LARGE,
            f"{len(lines) - 1} rows x {len(header)} columns exceed {max_cells} cells "
            "(CLINICAL_PIPELINES_MAX_TABLE_CELLS)",
        )
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)
    except Exception as exc:  # pandas' messages can quote cells
        return ParseFailure("table_parse_error", f"pandas could not parse the table ({type(exc).__name__})")
    frame = pd.DataFrame(index=raw.index)
    for column, kind in schema.columns.items():
        values = raw[column].str.strip().replace("", None)
        if kind == "date":
            frame[column] = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
        elif kind in ("float", "int"):
            frame[column] = pd.to_numeric(values, errors="coerce")
        else:
            frame[column] = values
    for column in schema.free_text:
        if column in raw.columns:
            frame[column] = raw[column].replace("", None)
    return ParsedTable(schema=schema, frame=frame, lines=lines)
