"""Table de-identification: no planted identifier survives, pseudonyms and shifts match the shared keyed
mappings, Safe Harbor ZIP and age rules, fail-closed unknown columns, k-anonymity counts, determinism."""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
from functools import cache

import pandas as pd
import pytest

from clinical_pipelines.deid.kanon import k_anonymity
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.tables import (
    RESTRICTED_ZIP3,
    deidentify_csv,
    deidentify_table,
    generalize_age,
    generalize_zip,
)
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.synth.models import Canary
from clinical_pipelines.validate.tables import parse_table

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DATE_COLUMNS = {"labs": ("collected_at",), "outcomes": ("admission_date", "discharge_date")}


@cache
def corpus() -> tuple[list[tuple[str, bytes]], tuple[Canary, ...]]:
    """The tabular files (labs and outcomes of every source) of a small synthetic corpus, and its canaries."""
    synth = SynthCorpus(11, n_patients=12, slices_per_series=1, rows=16, columns=16, dicom_series_per_patient=0,
                        notes_per_patient=0)  # fmt: skip
    files = [(f.path, f.data) for d in synth.iter_drops() for f in d.files if f.path.startswith("tabular/")]
    return files, tuple(synth.canaries())


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_corpus_has_both_tables() -> None:
    files, _ = corpus()
    names = sorted(p for p, _ in files)
    assert names.count("tabular/labs.csv") >= 2 and names.count("tabular/outcomes.csv") >= 2


def test_no_planted_identifier_survives() -> None:
    files, canaries = corpus()
    pz = Pseudonymizer(KEY)
    outputs = [deidentify_csv(data, pz)[0] for _, data in files]
    blob = b"\n".join(outputs)
    checked = 0
    for canary in canaries:
        if canary.kind in ("mrn", "patient_name", "phone", "ssn", "email", "address", "birth_date"):
            assert canary.value.encode() not in blob, canary.kind
            checked += 1
        elif canary.kind == "zip" and re.fullmatch(r"\d{5}", canary.value):
            assert re.search(rb"(?<![0-9A-Za-z])" + canary.value.encode() + rb"(?![0-9A-Za-z])", blob) is None
            checked += 1
    assert checked >= 30
    for data in outputs:  # the direct-identifier columns are gone altogether
        header = data.split(b"\n", 1)[0].decode().split(",")
        assert not {"mrn", "patient_name", "birth_date", "zip"} & set(header)


def test_no_original_date_survives() -> None:
    """Every released date is its own row's date moved by at least a day, and dates appear nowhere else.

    (A shifted date can legitimately equal some other real date, even of the same patient across a
    multi-day admission, so date canaries are not searched for in the bytes as a whole.)
    """
    files, canaries = corpus()
    pz = Pseudonymizer(KEY)
    date_canaries = {c.value for c in canaries if c.kind == "date"}
    checked = 0
    for path, data in files:
        kind = "labs" if path.endswith("labs.csv") else "outcomes"
        out = deidentify_csv(data, pz)[0]
        released = rows_of(out)
        for before, after in zip(rows_of(data), released, strict=True):
            assert before[DATE_COLUMNS[kind][0]] in date_canaries
            for column in DATE_COLUMNS[kind]:
                assert after[column] != before[column]
                checked += 1
        # no date-like token outside the date columns (birth dates, dates in other cells)
        tokens = re.findall(rb"\d{4}-\d{2}-\d{2}|\d{8}", out)
        assert len(tokens) == len(released) * len(DATE_COLUMNS[kind])
    assert checked > 50


def test_pseudonym_and_shift_match_shared_mappings_in_both_tables() -> None:
    files, _ = corpus()
    pz = Pseudonymizer(KEY)
    ids_by_table: dict[str, dict[str, str]] = {"labs": {}, "outcomes": {}}
    for path, data in files:
        kind = "labs" if path.endswith("labs.csv") else "outcomes"
        released = rows_of(deidentify_csv(data, pz)[0])
        originals = rows_of(data)
        assert len(released) == len(originals)
        for before, after in zip(originals, released, strict=True):
            mrn = before["mrn"]
            assert after["patient_id"] == pz.patient_id(mrn)
            assert after["patient_id"].startswith("PSN-")
            ids_by_table[kind][mrn] = after["patient_id"]
            shift = pz.date_shift_days(mrn)
            assert shift < 0
            for column in DATE_COLUMNS[kind]:
                original = datetime.date.fromisoformat(before[column])
                assert after[column] == (original + datetime.timedelta(days=shift)).isoformat()
                assert after[column] == pz.shift_date(original, mrn).isoformat()
    shared = set(ids_by_table["labs"]) & set(ids_by_table["outcomes"])
    assert len(shared) >= 10
    assert all(ids_by_table["labs"][m] == ids_by_table["outcomes"][m] for m in shared)
    # A fresh instance with the same key (as DICOM / notes would hold) agrees.
    fresh = Pseudonymizer(KEY)
    assert all(fresh.patient_id(m) == ids_by_table["labs"][m] for m in shared)


def test_typed_and_string_frames_give_the_same_release() -> None:
    files, _ = corpus()
    pz = Pseudonymizer(KEY)
    data = next(d for p, d in files if p.endswith("labs.csv"))
    parsed = parse_table(data)
    typed = deidentify_table(parsed.frame, "labs", pz)
    strings = deidentify_table(pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False), "labs", pz)
    for column in ("patient_id", "collected_at", "zip3", "age_at_collection", "test_code", "unit"):
        assert list(typed.frame[column]) == list(strings.frame[column]), column
    assert typed.report.dates_shifted == strings.report.dates_shifted == len(parsed.frame)


def test_zip_generalization() -> None:
    assert len(RESTRICTED_ZIP3) == 17
    for zip3 in RESTRICTED_ZIP3:
        assert generalize_zip(f"{zip3}42") == "000"
    assert generalize_zip("02191") == "021"
    assert generalize_zip("55438") == "554"
    assert generalize_zip("55612") == "000"  # 556 is restricted
    assert generalize_zip("89012-1234") == "000"
    assert generalize_zip("021911234") == "021"
    assert generalize_zip(2191) == "021"  # an integer column lost the leading zero
    assert generalize_zip(" 10001 ") == "100"
    for bad in ("", None, "ABCDE", "1234", "123456", float("nan")):
        assert generalize_zip(bad) is None

    pz = Pseudonymizer(KEY)
    frame = pd.DataFrame({
        "mrn": ["A1", "A2", "A3", "A4"],
        "zip": ["03601", "02191", "87901", "not-a-zip"],
        "collected_at": ["2024-01-01"] * 4,
    })  # fmt: skip
    result = deidentify_table(frame, "labs", pz)
    assert list(result.frame["zip3"]) == ["000", "021", "000", None]
    assert (result.report.zip_restricted, result.report.zip_generalized, result.report.zip_blanked) == (2, 1, 1)
    assert result.report.columns_missing == ("patient_name", "birth_date", "test_code", "value", "unit")


def test_ages_top_coded() -> None:
    assert generalize_age(93) == "90+"
    assert generalize_age(90) == "90+"
    assert generalize_age("89") == "89"
    assert generalize_age(45.7) == "45"
    assert generalize_age(-1) is None and generalize_age("old") is None and generalize_age(None) is None

    pz = Pseudonymizer(KEY)
    outcomes = pd.DataFrame({
        "mrn": ["A1", "A2", "A3", "A4"],
        "admission_date": ["2025-01-01"] * 4,
        "discharge_date": ["2025-01-05"] * 4,
        "outcome": ["discharged_home"] * 4,
        "age_at_admission": [93, 89, 90, None],
    })  # fmt: skip
    result = deidentify_table(outcomes, "outcomes", pz)
    assert list(result.frame["age_at_admission"]) == ["90+", "89", "90+", None]
    assert result.report.ages_top_coded == 2 and result.report.ages_blanked == 0

    labs = pd.DataFrame({
        "mrn": ["A1", "A2", "A3"],
        "patient_name": ["Ann Example", "Bob Example", "Cy Example"],
        "birth_date": ["1930-01-01", "1986-12-08", "1986-12-08"],
        "zip": ["02191"] * 3,
        "collected_at": ["2025-06-01", "2024-12-07", "2024-12-08"],
        "test_code": ["718-7"] * 3,
        "value": [10.0] * 3,
        "unit": ["g/dL"] * 3,
    })  # fmt: skip
    result = deidentify_table(labs, "labs", pz)
    assert list(result.frame["age_at_collection"]) == ["90+", "37", "38"]
    assert "birth_date" not in result.frame.columns and "patient_name" not in result.frame.columns
    assert result.report.ages_derived == 3 and result.report.ages_top_coded == 1


def test_synthetic_old_patient_is_top_coded() -> None:
    files, _ = corpus()
    pz = Pseudonymizer(KEY)
    ages = [
        row["age_at_admission"]
        for path, data in files
        if path.endswith("outcomes.csv")
        for row in rows_of(deidentify_csv(data, pz)[0])
    ]
    assert all(a == "90+" or int(a) < 90 for a in ages)
    originals = [int(r["age_at_admission"]) for p, d in files if p.endswith("outcomes.csv") for r in rows_of(d)]
    assert ages.count("90+") == sum(a >= 90 for a in originals)


def test_unknown_columns_dropped_and_reported() -> None:
    pz = Pseudonymizer(KEY)
    frame = pd.DataFrame({
        "mrn": ["MRN0000001"],
        "admission_date": ["2025-01-01"],
        "discharge_date": ["2025-01-03"],
        "outcome": ["discharged_home"],
        "age_at_admission": ["50"],
        "ssn": ["123-45-6789"],
        "bed_label": ["Ward 7 bed SECRETVALUE"],
    })  # fmt: skip
    result = deidentify_table(frame, "outcomes", pz)
    assert "bed_label" not in result.frame.columns and "ssn" not in result.frame.columns
    assert result.report.columns_unknown == ("bed_label",)
    assert result.report.columns_dropped == ("ssn", "bed_label")
    assert result.report.columns_pseudonymized == ("mrn",)

    data = (
        b"mrn,admission_date,discharge_date,outcome,age_at_admission,bed_label\n"
        b"MRN0000001,2025-01-01,2025-01-03,discharged_home,50,Ward 7 bed SECRETVALUE\n"
    )
    out, result = deidentify_csv(data, pz)
    assert b"SECRETVALUE" not in out and b"bed_label" not in out and b"MRN0000001" not in out
    assert result.report.columns_unknown == ("bed_label",)
    assert out.decode().splitlines()[0] == "patient_id,admission_date,discharge_date,outcome,age_at_admission"
    metadata = json.dumps(result.report.to_metadata())
    assert "SECRETVALUE" not in metadata and "MRN0000001" not in metadata and "2025-01" not in metadata


def test_unparseable_csv_raises_without_values() -> None:
    pz = Pseudonymizer(KEY)
    with pytest.raises(ValueError, match="wrong_delimiter") as info:
        deidentify_csv(b"mrn;admission_date\nMRN7777777;2025-01-01\n", pz)
    assert "MRN7777777" not in str(info.value)
    with pytest.raises(ValueError, match="unknown_table_schema"):
        deidentify_csv(b"alpha,beta\nMRN7777777,x\n", pz)
    with pytest.raises(ValueError, match="no de-identification policy"):
        deidentify_table(pd.DataFrame({"a": ["MRN7777777"]}), "imaging", pz)


def test_report_holds_no_cell_values() -> None:
    files, canaries = corpus()
    pz = Pseudonymizer(KEY)
    text = json.dumps([deidentify_csv(data, pz)[1].report.to_metadata() for _, data in files])
    for canary in canaries:
        assert canary.value not in text
    assert "PSN-" not in text


def test_k_anonymity_on_a_hand_made_frame() -> None:
    frame = pd.DataFrame({
        "patient_id": ["p1", "p1", "p2", "p3", "p3", "p4", "p5"],
        "zip3": ["021", "021", "021", "554", "554", "000", None],
        "age": ["40", "40", "40", "63", "63", "90+", "90+"],
    })  # fmt: skip
    report = k_anonymity(frame, ["zip3", "age"], threshold=3, patient_column="patient_id")
    assert report.rows == 7
    assert report.classes == 4  # (021,40)x3, (554,63)x2, (000,90+)x1, (null,90+)x1
    assert report.k == 1
    assert report.classes_below_threshold == 3
    assert report.rows_below_threshold == 4
    assert report.k_patients == 1
    assert not report.satisfied

    by_age = k_anonymity(frame, ["age"], threshold=2, patient_column="patient_id")
    assert (by_age.k, by_age.classes, by_age.rows_below_threshold, by_age.k_patients) == (2, 3, 0, 1)
    assert by_age.satisfied

    whole = k_anonymity(frame, [], threshold=5)
    assert (whole.k, whole.classes, whole.rows_below_threshold, whole.k_patients) == (7, 1, 0, None)

    empty = k_anonymity(frame.iloc[0:0], ["age"])
    assert (empty.k, empty.classes, empty.rows) == (0, 0, 0)
    with pytest.raises(ValueError, match="sex"):
        k_anonymity(frame, ["sex"])


def test_k_anonymity_in_table_report() -> None:
    pz = Pseudonymizer(KEY)
    frame = pd.DataFrame({
        "mrn": ["A1", "A2", "A3", "A4", "A5"],
        "admission_date": ["2025-01-01"] * 5,
        "discharge_date": ["2025-01-05"] * 5,
        "outcome": ["died", "died", "discharged_home", "discharged_home", "discharged_home"],
        "age_at_admission": [91, 95, 50, 50, 70],
    })  # fmt: skip
    report = deidentify_table(frame, "outcomes", pz, k_threshold=2).report
    assert report.kanon.quasi_identifiers == ("age_at_admission", "outcome")
    # classes: (90+, died)x2, (50, home)x2, (70, home)x1
    assert (report.kanon.k, report.kanon.classes, report.kanon.rows_below_threshold) == (1, 3, 1)
    custom = deidentify_table(frame, "outcomes", pz, quasi_identifiers=["outcome"]).report.kanon
    assert (custom.k, custom.classes, custom.rows_below_threshold) == (2, 2, 5)
    with pytest.raises(ValueError, match="mrn"):
        deidentify_table(frame, "outcomes", pz, quasi_identifiers=["mrn"])


def test_deterministic_and_keyed() -> None:
    files, _ = corpus()
    data = next(d for p, d in files if p.endswith("outcomes.csv"))
    first, _ = deidentify_csv(data, Pseudonymizer(KEY))
    second, _ = deidentify_csv(data, Pseudonymizer(KEY))
    assert first == second
    other, _ = deidentify_csv(data, Pseudonymizer(OTHER_KEY))
    assert other != first
    ids = {r["patient_id"] for r in rows_of(first)}
    other_ids = {r["patient_id"] for r in rows_of(other)}
    assert ids and other_ids and not ids & other_ids


def test_rows_without_patient_key_lose_their_dates() -> None:
    pz = Pseudonymizer(KEY)
    frame = pd.DataFrame({
        "mrn": ["A1", None, "  "],
        "admission_date": ["2025-01-01", "2025-02-01", "2025-03-01"],
        "discharge_date": ["2025-01-05", "garbage", None],
        "outcome": ["died"] * 3,
        "age_at_admission": [50, 60, 70],
    })  # fmt: skip
    result = deidentify_table(frame, "outcomes", pz)
    assert list(result.frame["patient_id"]) == [pz.patient_id("A1"), None, None]
    assert list(result.frame["admission_date"]) == [pz.shift_date(datetime.date(2025, 1, 1), "A1").isoformat(), None,
                                                    None]  # fmt: skip
    assert result.report.rows_without_patient_key == 2
    assert result.report.dates_shifted == 2
    assert result.report.dates_blanked == 3  # two admission dates without a key, one unparseable discharge date
