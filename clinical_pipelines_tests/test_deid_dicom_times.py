"""Times shift with dates: one keyed per-patient offset (whole days + a time-of-day part) for DA+TM
pairs, DT values and lone TM values; intervals within a patient stay exact, no clock time survives."""

from __future__ import annotations

import datetime
import io

import pydicom
import pytest
from pydicom.datadict import keyword_for_tag

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.temporal import date_time_pairs, shift_datetime, shift_time
from clinical_pipelines.synth import SynthCorpus

KEY = b"time shift test secret, at least 32 bytes"
# Clock times of one patient's files, some close to midnight so that a shift carries the date along.
TIMES = ["235930", "000015.250", "1205", "12:06:07", "083000.5"]


@pytest.fixture(scope="module")
def patient_files() -> tuple[str, list[bytes]]:
    """Files of one patient, with a different study/series/acquisition/content time in each."""
    corpus = SynthCorpus(17, n_patients=1, slices_per_series=5, rows=16, columns=16)
    files = [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"][: len(TIMES)]
    assert len(files) == len(TIMES)
    out = []
    for i, (data, clock) in enumerate(zip(files, TIMES, strict=True)):
        ds = pydicom.dcmread(io.BytesIO(data))
        day = f"202403{10 + i:02d}"
        ds.StudyDate, ds.SeriesDate, ds.AcquisitionDate, ds.ContentDate = day, day, day, day
        ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime, ds.ContentTime = clock, clock, clock, clock
        ds.AcquisitionDateTime = f"{day}{clock.replace(':', '')}+0100"
        out.append(_saved(ds))
    return str(pydicom.dcmread(io.BytesIO(out[0])).PatientID), out


def _saved(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _moment(date: str, time: str) -> datetime.datetime:
    time = time.replace(":", "").split(".")[0].ljust(6, "0")
    return datetime.datetime.strptime(date + time, "%Y%m%d%H%M%S")


def _pairs(ds: pydicom.Dataset) -> dict[str, datetime.datetime]:
    """Every DA+TM pair with values, as moments, by the date's keyword."""
    return {
        keyword_for_tag(d): _moment(ds[d].value, ds[t].value)
        for d, t in date_time_pairs().items()
        if d in ds and t in ds and ds[d].value and ds[t].value
    }


def test_date_time_pairs_move_by_one_offset_and_intervals_stay_exact(patient_files: tuple[str, list[bytes]]) -> None:
    mrn, files = patient_files
    pseudonymizer = Pseudonymizer(KEY)
    deid = DicomDeidentifier(pseudonymizer)
    offset = pseudonymizer.datetime_shift(mrn)
    assert offset.days == pseudonymizer.date_shift_days(mrn) and 0 < offset.seconds < 86400
    before, after = [], []
    for data in files:
        original, out = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(deid.deidentify_bytes(data)[0]))
        old, new = _pairs(original), _pairs(out)
        assert {"StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"} <= old.keys() == new.keys()
        for keyword, moment in old.items():
            assert new[keyword] - moment == offset, keyword
        assert out.AcquisitionDateTime.endswith("+0100")  # the UTC offset stays, the moment moves
        moved = _moment(out.AcquisitionDateTime[:8], out.AcquisitionDateTime[8:-5]) - old["AcquisitionDate"]
        assert moved == offset
        before.append(old["StudyDate"])
        after.append(new["StudyDate"])
    assert [b - before[0] for b in before] == [a - after[0] for a in after]  # intervals across files, exact
    # the shift carried a date across midnight for some file: dates do not simply move by whole days
    assert {a.date() - b.date() for a, b in zip(after, before, strict=True)} != {datetime.timedelta(offset.days)}


def test_no_original_time_of_day_survives(patient_files: tuple[str, list[bytes]]) -> None:
    _, files = patient_files
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    for data in files:
        original, out = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(deid.deidentify_bytes(data)[0]))
        times = [e for e in original.iterall() if e.VR in ("TM", "DT") and e.value]
        assert times
        for element in times:
            if element.tag in out:
                assert out[element.tag].value != element.value, element.keyword
        clocks = {str(e.value).replace(":", "")[:6] for e in times if e.VR == "TM"}
        assert not any(str(e.value).replace(":", "")[:6] in clocks for e in out.iterall() if e.VR == "TM" and e.value)


def test_a_lone_time_wraps_and_a_lone_date_moves_by_whole_days(patient_files: tuple[str, list[bytes]]) -> None:
    mrn, files = patient_files
    pseudonymizer = Pseudonymizer(KEY)
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    del ds.ContentDate  # Content Time has no date to move with
    del ds.StudyTime  # Study Date has no time
    out = pydicom.dcmread(io.BytesIO(DicomDeidentifier(pseudonymizer).deidentify_bytes(_saved(ds))[0]))
    seconds = pseudonymizer.time_shift_seconds(mrn)
    assert out.ContentTime == shift_time(ds.ContentTime, seconds)
    clock = _moment("20000101", ds.ContentTime)
    assert _moment("20000101", out.ContentTime) == (clock + datetime.timedelta(seconds=seconds)).replace(
        year=2000, month=1, day=1
    )
    day = datetime.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
    # the same whole days as notes and tables (Pseudonymizer.shift_date)
    assert out.StudyDate == pseudonymizer.shift_date(day, mrn).strftime("%Y%m%d")
    assert shift_datetime("20240102", -3, 100) == "20231230"  # a DT without a time is a date alone


def test_keep_time_of_day_option_keeps_clock_times_and_moves_dates_by_days(
    patient_files: tuple[str, list[bytes]],
) -> None:
    mrn, files = patient_files
    pseudonymizer = Pseudonymizer(KEY)
    deid = DicomDeidentifier(pseudonymizer, DicomDeidPolicy(keep_time_of_day=True))
    days = datetime.timedelta(days=pseudonymizer.date_shift_days(mrn))
    for data in files:
        original, out = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(deid.deidentify_bytes(data)[0]))
        assert out.StudyTime == original.StudyTime and out.AcquisitionDateTime[8:] == original.AcquisitionDateTime[8:]
        old, new = _pairs(original), _pairs(out)
        assert all(new[k] - old[k] == days for k in old)


@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("StudyTime", "25:61", "malformed_time"),
        ("ContentTime", "noon", "malformed_time"),
        ("AcquisitionDateTime", "2024-03-10T10:00", "malformed_date"),
        ("AcquisitionDateTime", "2024031099", "malformed_time"),
    ],
)
def test_malformed_times_are_refused_with_a_reason(
    patient_files: tuple[str, list[bytes]], keyword: str, value: str, reason: str
) -> None:
    _, files = patient_files
    ds = pydicom.dcmread(io.BytesIO(files[0]))
    setattr(ds, keyword, value)
    with pytest.raises(DeidRejected) as err:
        DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(_saved(ds))
    assert err.value.reason == reason and value not in str(err.value)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: shift_time("235959.123", 2), "000001.123"),  # wraps at midnight, the fraction stays
        (lambda: shift_time("16:02:37", 60), "160337"),  # the ACR-NEMA form is read, written as HHMMSS
        (lambda: shift_time("14", 90), "140130"),  # reduced precision: written with seconds
        (lambda: shift_datetime("20240301233000+0100", -1, 3600), "20240301003000+0100"),  # date follows
        (lambda: shift_datetime("202403012330", 0, 1800), "20240302000000"),
        (lambda: shift_datetime("20240229", 1, 40000), "20240301"),  # a date alone: whole days only
    ],
)
def test_temporal_values_shift_exactly(call, expected: str) -> None:
    assert call() == expected


@pytest.mark.parametrize("value", ["2460", "1261", "12345", "12:3", "", "T1"])
def test_malformed_tm_values_raise_a_reason_without_the_value(value: str) -> None:
    from clinical_pipelines.deid.temporal import TemporalError

    with pytest.raises(TemporalError) as err:
        shift_time(value, 10)
    assert err.value.reason == "malformed_time" and (not value or value not in str(err.value))
