"""Tables: closed-form columns (LOINC, UCUM, numbers) release only cells in their form, free-text columns go
through the notes engine or are dropped, every released cell is re-read, and CSV cells cannot run as formulas."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from clinical_pipelines.deid.findings import table_findings
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.tables import (
    LABS_POLICY,
    TablePolicy,
    csv_safe,
    deidentify_csv,
    deidentify_csv_checked,
    deidentify_table,
    table_csv_bytes,
)
from clinical_pipelines.validate.forms import conforms, is_loinc, is_ucum

KEY = bytes(range(32))
HEADER = "mrn,patient_name,birth_date,zip,collected_at,test_code,value,unit"


def labs(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def cells(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


# Codes and units from LOINC's and UCUM's own documentation, not from this project's generator.
@pytest.mark.parametrize("code", ["8480-6", "8867-4", "29463-7", "39156-5", "2339-0", "8310-5", "59408-5"])
def test_loinc_codes_with_their_check_digit(code: str) -> None:
    assert is_loinc(code)
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert not is_loinc(wrong)


@pytest.mark.parametrize(
    "unit",
    ["mg/dL", "mmol/L", "kg/m2", "mm[Hg]", "/min", "[lb_av]", "10*9/L", "meq/L", "cm[H2O]", "[pH]", "%", "ug/(kg.h)",
     "{beats}/min", "mL/min/{1.73_m2}", "[IU]/mL", "Cel", "[degF]", "s-1", "fL", "ng/mL", "kPa", "mosm/kg"],
)  # fmt: skip
def test_ucum_units_conform(unit: str) -> None:
    assert is_ucum(unit)


@pytest.mark.parametrize(
    "text", ["Smith", "John Smith", "Dr. Jones", "Kim", '=HYPERLINK("http://x")', "{John}/min", "mg/dL Smith", ""]
)
def test_names_and_formulas_are_not_units(text: str) -> None:
    assert not is_ucum(text)
    assert not conforms("unknown-form", "mg/dL")  # an unknown form fails closed


def test_a_name_in_a_kept_column_is_redacted_not_released() -> None:
    data = labs(
        "MRN-0001,Ada Lovelace,1950-01-02,02139,2021-03-04,8480-6,120,mm[Hg]",
        "MRN-0001,Ada Lovelace,1950-01-02,02139,2021-03-05,8867-4,-3.2,Lovelace",
        "MRN-0002,Alan Turing,1960-05-06,10001,2021-03-06,Turing,7.1,mg/dL",
    )
    out, result = deidentify_csv(data, Pseudonymizer(KEY))
    assert b"Lovelace" not in out and b"Turing" not in out
    rows = cells(out)
    assert [r["unit"] for r in rows] == ["mm[Hg]", "", "mg/dL"]
    assert [r["test_code"] for r in rows] == ["8480-6", "8867-4", ""]
    assert rows[1]["value"] == "-3.2"  # a number in a numeric column is not a formula: kept as is
    assert result.report.cells_redacted == 2


def test_formula_cells_are_neutralised() -> None:
    for text in ("=1+2", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(text) == "'" + text
    assert csv_safe(-3.2) == -3.2 and csv_safe(7) == 7 and csv_safe("mg/dL") == "mg/dL" and csv_safe(None) == ""
    frame = pd.DataFrame({"patient_id": ["PSN-A"], "note": ["=cmd|' /C calc'!A0"], "value": [-1.5]}, dtype=object)
    row = cells(table_csv_bytes(frame))[0]
    assert row["note"] == "'=cmd|' /C calc'!A0" and row["value"] == "-1.5"


def test_free_text_column_is_dropped_without_the_notes_engine() -> None:
    data = labs("MRN-0001,Ada Lovelace,1950-01-02,02139,2021-03-04,8480-6,120,mm[Hg],Ada called back",
                header=HEADER + ",comment")  # fmt: skip
    out, result = deidentify_csv(data, Pseudonymizer(KEY))
    assert "comment" in result.report.columns_dropped and b"called" not in out


@pytest.fixture(scope="module")
def notes_engine():
    from clinical_pipelines.deid.notes import NoteDeidentifier

    return NoteDeidentifier(Pseudonymizer(KEY))


def test_free_text_goes_through_the_notes_engine_and_formulas_stay_inert(notes_engine) -> None:
    comment = '"=HYPERLINK(""http://evil.example""); Spoke with Margaret Hamilton at (617) 555-0142 on 2021-03-04."'
    data = labs("MRN-0001,Ada Lovelace,1950-01-02,02139,2021-03-04,8480-6,120,mm[Hg]," + comment,
                header=HEADER + ",comment")  # fmt: skip
    out, result = deidentify_csv(data, Pseudonymizer(KEY), notes=notes_engine)
    released = cells(out)[0]["comment"]
    assert "Hamilton" not in released and "555-0142" not in released and "2021-03-04" not in released
    assert released.startswith("'=")  # de-identified text that starts like a formula is neutralised
    assert result.report.columns_free_text == ("comment",) and result.report.free_text_cells == 1


def test_residual_scan_finds_an_identifier_left_in_a_kept_cell(notes_engine) -> None:
    """A policy that keeps a column without a form lets a name through: the scan of every kept cell finds it."""
    frame = pd.DataFrame({"mrn": ["MRN-0001"], "patient_name": ["Grace Hopper"], "unit": ["Grace Hopper"]})
    loose = TablePolicy(name="labs", roles={"mrn": "patient_key", "patient_name": "drop", "unit": "keep"})
    result = deidentify_table(frame, loose, Pseudonymizer(KEY))
    out = table_csv_bytes(result.frame)
    assert table_findings(frame, result, loose, out, None) == {"patient_name": 1}
    strict = deidentify_table(frame, LABS_POLICY, Pseudonymizer(KEY))
    assert table_findings(frame, strict, LABS_POLICY, table_csv_bytes(strict.frame), notes_engine.analyze_many) == {}


def test_checked_csv_reports_clean_on_a_clean_table() -> None:
    data = labs("MRN-0001,Ada Lovelace,1950-01-02,02139,2021-03-04,8480-6,120,mm[Hg]")
    out, result, findings = deidentify_csv_checked(data, Pseudonymizer(KEY))
    assert findings == {} and b"Lovelace" not in out and result.report.rows == 1
