"""Tests for the synthetic clinical data generator (clinical_pipelines.synth)."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import random
import re

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

import clinical_pipelines.synth as synth
import clinical_pipelines.synth.corpus as corpus_mod
from clinical_pipelines.synth import (
    REFERENCE_DATE,
    RESTRICTED_ZIP3,
    UID_ROOT,
    Canary,
    SynthCorpus,
    SynthDrop,
    SynthFile,
)

SYNTH_DIR = pathlib.Path(synth.__file__).parent
UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
TEXT_IDENTIFIER_PATTERNS = (
    re.compile(r"MRN\d{7}"),
    re.compile(r"\b9\d\d-\d\d-\d{4}\b"),
    re.compile(r"\(555\) \d{3}-\d{4}"),
    re.compile(r"[\w.]+@example\.org"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}\b"),
    re.compile(r"\b\d{2}/\d{2}/\d{4}\b"),
    re.compile(rf"\b(?:{MONTHS}) \d{{1,2}}, \d{{4}}"),
    re.compile(r"\b\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}\b"),
    re.compile(r"\bA\d{9}\b"),
    re.compile(r"(?<=Dr\. )[A-Z][a-z]+ [A-Z][a-z]+"),
)
# DICOM attributes whose (string) value is an identifier that must be a canary.
IDENTIFYING_KEYWORDS = {
    "AccessionNumber", "PatientID", "StationName", "DeviceSerialNumber", "StudyID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID",
    "InstitutionName", "InstitutionAddress", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> SynthCorpus:
    return SynthCorpus(7)


@pytest.fixture(scope="module")
def drops(corpus: SynthCorpus) -> list[SynthDrop]:
    return list(corpus.iter_drops())


@pytest.fixture(scope="module")
def files(drops: list[SynthDrop]) -> list[SynthFile]:
    return [f for d in drops for f in d.files]


@pytest.fixture(scope="module")
def canary_values(corpus: SynthCorpus) -> set[str]:
    return {c.value for c in corpus.canaries()}


def _fingerprint(drops: list[SynthDrop]) -> list[tuple[str, str, str, bytes]]:
    return [(d.source, d.drop_id, f.path, f.data) for d in drops for f in d.files]


def _seq_depth(ds: Dataset) -> int:
    depth = 0
    for elem in ds:
        if elem.VR == "SQ":
            depth = max(depth, 1 + max((_seq_depth(item) for item in elem.value), default=0))
    return depth


def _dicoms(files: list[SynthFile]) -> list[tuple[SynthFile, Dataset]]:
    return [(f, pydicom.dcmread(io.BytesIO(f.data))) for f in files if f.modality == "dicom"]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_canaries(drops: list[SynthDrop]) -> None:
    again = SynthCorpus(7)
    assert _fingerprint(list(again.iter_drops())) == _fingerprint(drops)
    assert again.canaries() == SynthCorpus(7).canaries()
    assert again.patients == SynthCorpus(7).patients
    assert [d.manifest_bytes() for d in again.iter_drops()] == [d.manifest_bytes() for d in drops]


def test_different_seed_gives_different_output(corpus: SynthCorpus, drops: list[SynthDrop]) -> None:
    other = SynthCorpus(8)
    assert {p.mrn for p in other.patients}.isdisjoint({p.mrn for p in corpus.patients})
    theirs = {(d.source, d.drop_id, f.path): f.data for d in other.iter_drops() for f in d.files}
    ours = {(d.source, d.drop_id, f.path): f.data for d in drops for f in d.files}
    for key in ours.keys() & theirs.keys():
        assert ours[key] != theirs[key], key
    uids = {c.value for c in corpus.canaries() if c.kind == "uid"}
    assert uids.isdisjoint(c.value for c in other.canaries() if c.kind == "uid")


def test_generation_leaves_global_rngs_untouched() -> None:
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()
    small = SynthCorpus(3, rows=32, columns=32, n_patients=2)
    list(small.iter_drops())
    small.canaries()
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


def test_sources_never_import_dagster_or_nondeterminism() -> None:
    forbidden = ("dagster", "uuid", "import time", "time.time(", "perf_counter", "datetime.now",
                 "date.today", "utcnow", "generate_uid", "np.random.seed", "random.seed(",
                 "os.urandom", "secrets")  # fmt: skip
    for src in SYNTH_DIR.glob("*.py"):
        text = src.read_text()
        for token in forbidden:
            assert token not in text, f"{src.name} uses {token}"


# --------------------------------------------------------------------------- layout


def test_drop_layout(corpus: SynthCorpus, drops: list[SynthDrop]) -> None:
    assert 3 <= len(drops) <= 6
    assert [(d.source, d.drop_id) for d in drops] == corpus.drop_keys()
    keys = [(d.source, d.drop_id) for d in drops]
    assert len(set(keys)) == len(keys)
    for source in ("hospital-a", "hospital-b"):
        mine = [d for d in drops if d.source == source]
        assert all(re.fullmatch(r"drop-\d{4}", d.drop_id) for d in mine)
        modalities = {f.modality for d in mine for f in d.files}
        assert modalities == {"dicom", "notes", "tabular"}
        dicom_paths = [f.path for d in mine for f in d.files if f.modality == "dicom"]
        assert any(p.startswith("dicom/ct-") for p in dicom_paths)
        assert any(p.startswith("dicom/mr-") for p in dicom_paths)
    for d in drops:
        for f in d.files:
            assert re.fullmatch(r"(dicom/(ct|mr)-\d{4}\.dcm|notes/note-\d{4}\.txt|"
                                r"tabular/(labs|outcomes)\.csv)", f.path)  # fmt: skip


def test_manifest_matches_data(drops: list[SynthDrop]) -> None:
    for d in drops:
        manifest = d.manifest()
        assert manifest["drop_id"] == d.drop_id and manifest["source"] == d.source
        paths = [e["path"] for e in manifest["files"]]
        assert paths == sorted(f.path for f in d.files)
        by_path = {f.path: f.data for f in d.files}
        for entry in manifest["files"]:
            assert set(entry) == {"path", "size", "sha256"}
            data = by_path[entry["path"]]
            assert entry["size"] == len(data)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        raw = d.manifest_bytes()
        assert raw.endswith(b"}\n") and json.loads(raw) == manifest
        assert raw == json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"


# --------------------------------------------------------------------------- patients


def test_patients_have_required_identifiers(corpus: SynthCorpus) -> None:
    patients = corpus.patients
    assert len(patients) == 6
    assert len({p.mrn for p in patients}) == 6
    for p in patients:
        assert re.fullmatch(r"MRN\d{7}", p.mrn)
        assert re.fullmatch(r"9\d\d-\d\d-\d{4}", p.ssn)
        assert re.fullmatch(r"\(555\) \d{3}-\d{4}", p.phone)
        assert re.fullmatch(r"\d{5}", p.zip)
        assert p.email.endswith("@example.org") and p.sex in ("F", "M")


@pytest.mark.parametrize("n_patients", [1, 2, 6])
def test_every_corpus_has_an_over_89_patient_and_a_restricted_zip(n_patients: int) -> None:
    for seed in range(25):
        patients = SynthCorpus(seed, n_patients=n_patients, rows=16, columns=16).patients
        ages = [(REFERENCE_DATE - p.birth_date).days / 365.25 for p in patients]
        assert max(ages) > 90, seed
        assert any(p.zip[:3] in RESTRICTED_ZIP3 for p in patients), seed


# --------------------------------------------------------------------------- DICOM


def test_dicom_files_are_valid_part10_with_pixels(files: list[SynthFile]) -> None:
    dicoms = _dicoms(files)
    assert len(dicoms) == 24
    sop_uids = set()
    for f, ds in dicoms:
        assert f.data[:128] == b"\0" * 128 and f.data[128:132] == b"DICM"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        expected_class = CTImageStorage if ds.Modality == "CT" else MRImageStorage
        assert ds.file_meta.MediaStorageSOPClassUID == expected_class == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert f.path.startswith(f"dicom/{ds.Modality.lower()}-")
        assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (
            512, 512, 16, 16, 15
        )  # fmt: skip
        assert ds.PixelRepresentation == 1 and ds.SamplesPerPixel == 1
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        pixels = ds.pixel_array
        assert pixels.shape == (512, 512) and pixels.dtype == np.int16
        if ds.Modality == "CT":
            hu = pixels.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert hu.min() < -900 and hu.max() > 500  # air and bone present
        else:
            assert pixels.min() >= 0 and pixels.max() > 600
        assert pixels.std() > 50
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                   "FrameOfReferenceUID"):  # fmt: skip
            uid = str(getattr(ds, kw))
            assert uid.startswith(UID_ROOT) and len(uid) <= 64 and UID_RE.fullmatch(uid)
        sop_uids.add(ds.SOPInstanceUID)
        family, given = str(ds.PatientName).split("^")
        assert ds[0x0009, 0x1001].value == f"{given} {family}"  # private copy of the name
    assert len(sop_uids) == len(dicoms)


def test_dicom_headers_are_realistic_and_nested(files: list[SynthFile]) -> None:
    required = (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
        "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDsSequence", "StudyDate",
        "StudyTime", "SeriesDate", "AcquisitionDate", "ContentDate", "AccessionNumber",
        "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
        "PerformingPhysicianName", "OperatorsName", "StationName", "DeviceSerialNumber",
        "Manufacturer", "ManufacturerModelName", "StudyDescription", "SeriesDescription",
        "ProtocolName", "BodyPartExamined", "InstanceNumber", "ImagePositionPatient",
        "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleIntercept",
        "RescaleSlope", "WindowCenter", "WindowWidth", "RequestAttributesSequence",
        "ProcedureCodeSequence", "ImageComments", "AdditionalPatientHistory",
    )  # fmt: skip
    for _, ds in _dicoms(files):
        missing = [kw for kw in required if kw not in ds]
        assert not missing
        assert _seq_depth(ds) >= 2
        request = ds.RequestAttributesSequence[0]
        assert request.AccessionNumber == ds.AccessionNumber
        assert request.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
        assert ds.OtherPatientIDsSequence[0].PatientID.startswith("9")
        block = ds.private_block(0x0009, "ACME_CLINICAL 1.0")
        assert block[0x02].value == ds.PatientID
        assert any(elem.tag.is_private for elem in ds)
        assert str(ds.PatientName).split("^")[0] in ds.AdditionalPatientHistory
        assert ds.PatientID in ds.ImageComments


def test_over_89_patient_age_is_in_dicom(corpus: SynthCorpus, files: list[SynthFile]) -> None:
    old = {p.mrn for p in corpus.patients if p.birth_date.year <= 1933}
    assert old
    ages = {ds.PatientID: ds.PatientAge for _, ds in _dicoms(files)}
    for mrn in old & ages.keys():
        assert re.fullmatch(r"\d{3}Y", ages[mrn]) and int(ages[mrn][:3]) > 89
        assert Canary("age_over_89", ages[mrn], mrn) in corpus.canaries()


# --------------------------------------------------------------------------- notes & CSV


def test_notes_are_long_utf8_with_all_date_formats(corpus: SynthCorpus, files: list[SynthFile]) -> None:
    notes = [f.data.decode("utf-8") for f in files if f.modality == "notes"]
    assert len(notes) == 6 * 2
    patients = {p.mrn: p for p in corpus.patients}
    for text in notes:
        assert len(text.split()) >= 200
        mrn = re.search(r"MRN\d{7}", text).group(0)
        p = patients[mrn]
        for value in (p.full_name, p.ssn, p.phone, p.email, p.zip, p.address):
            assert value in text
        for pattern in TEXT_IDENTIFIER_PATTERNS[4:9]:  # ISO, US, long, short dates, accession
            assert pattern.search(text), pattern.pattern
        if p.birth_date.year <= 1933:
            assert re.search(r"\b(9\d)-year-old\b", text)


def test_csvs_parse_with_expected_columns(corpus: SynthCorpus, files: list[SynthFile]) -> None:
    mrns = {p.mrn for p in corpus.patients}
    labs = [f for f in files if f.path == "tabular/labs.csv"]
    outcomes = [f for f in files if f.path == "tabular/outcomes.csv"]
    assert len(labs) == len(outcomes) == 2
    for f in labs:
        df = pd.read_csv(io.BytesIO(f.data), dtype={"zip": str})
        assert list(df.columns) == ["mrn", "patient_name", "birth_date", "zip", "collected_at",
                                    "test_code", "value", "unit"]  # fmt: skip
        assert pd.api.types.is_float_dtype(df["value"])
        assert set(df["mrn"]) <= mrns
        assert df.groupby("mrn").size().min() >= 6
        pd.to_datetime(df["collected_at"], format="%Y-%m-%d")
        pd.to_datetime(df["birth_date"], format="%Y-%m-%d")
        assert df["zip"].str.fullmatch(r"\d{5}").all()
    for f in outcomes:
        df = pd.read_csv(io.BytesIO(f.data))
        assert list(df.columns) == ["mrn", "admission_date", "discharge_date", "outcome",
                                    "age_at_admission"]  # fmt: skip
        admit = pd.to_datetime(df["admission_date"], format="%Y-%m-%d")
        discharge = pd.to_datetime(df["discharge_date"], format="%Y-%m-%d")
        assert (discharge > admit).all()
        assert pd.api.types.is_integer_dtype(df["age_at_admission"])
    all_outcomes = pd.concat(pd.read_csv(io.BytesIO(f.data)) for f in outcomes)
    assert set(all_outcomes["mrn"]) == mrns
    assert (all_outcomes["age_at_admission"] > 89).any()


# --------------------------------------------------------------------------- canaries


def test_every_canary_occurs_in_the_bytes(corpus: SynthCorpus, files: list[SynthFile]) -> None:
    canaries = corpus.canaries()
    assert len(canaries) == len(set(canaries))
    blobs = [f.data for f in files]
    missing = [c for c in canaries if not any(c.value.encode() in b for b in blobs)]
    assert not missing
    assert all(len(c.value) >= 4 for c in canaries)
    kinds = {c.kind for c in canaries}
    assert {"patient_name", "mrn", "birth_date", "phone", "address", "zip", "email", "ssn",
            "accession", "institution", "physician_name", "age_over_89", "date",
            "uid"} <= kinds  # fmt: skip
    mrns = {p.mrn for p in corpus.patients}
    assert all(c.patient_mrn is None or c.patient_mrn in mrns for c in canaries)


def test_patient_identifiers_are_canaries(corpus: SynthCorpus) -> None:
    have = {(c.kind, c.value, c.patient_mrn) for c in corpus.canaries()}
    for p in corpus.patients:
        for kind, value in (
            ("mrn", p.mrn), ("ssn", p.ssn), ("phone", p.phone), ("email", p.email),
            ("zip", p.zip), ("address", p.address), ("address", p.full_address),
            ("patient_name", p.full_name), ("patient_name", p.dicom_name),
            ("patient_name", p.family), ("birth_date", p.birth_date.isoformat()),
            ("birth_date", p.birth_date.strftime("%Y%m%d")),
            ("birth_date", p.birth_date.strftime("%m/%d/%Y")),
        ):  # fmt: skip
            assert (kind, value, p.mrn) in have


def test_dicom_identifiers_are_all_canaries(files: list[SynthFile], canary_values: set[str]) -> None:
    for _, ds in _dicoms(files):
        for elem in ds.iterall():
            if elem.VR == "SQ" or elem.tag == 0x7FE00010 or not elem.value:
                continue
            value = str(elem.value)
            identifying = (
                elem.VR in ("PN", "DA")
                or elem.keyword in IDENTIFYING_KEYWORDS
                or (elem.VR == "UI" and value.startswith(UID_ROOT))
                or (elem.tag.is_private and elem.VR == "LO" and elem.tag.element != 0x0010)
                or (elem.keyword == "CodeValue" and len(value) == 10)  # physician NPI
            )
            if identifying:
                assert value in canary_values, (elem.tag, elem.keyword, value)
        age = ds.PatientAge
        if int(age[:3]) > 89:
            assert age in canary_values


def test_text_identifiers_are_all_canaries(files: list[SynthFile], canary_values: set[str]) -> None:
    for f in files:
        if f.modality == "dicom":
            continue
        text = f.data.decode("utf-8")
        for pattern in TEXT_IDENTIFIER_PATTERNS:
            for match in pattern.findall(text):
                assert match in canary_values, (f.path, match)
        for age in re.findall(r"\b(\d+)-year-old\b", text):
            if int(age) > 89:
                assert f"{age}-year-old" in canary_values
        if f.path == "tabular/labs.csv":
            df = pd.read_csv(io.BytesIO(f.data), dtype=str)
            for col in ("mrn", "patient_name", "birth_date", "zip", "collected_at"):
                assert set(df[col]) <= canary_values, col


def test_canaries_are_cached_copies_and_written_as_json(corpus: SynthCorpus, tmp_path: pathlib.Path) -> None:
    first = corpus.canaries()
    first.clear()
    assert corpus.canaries()
    out = tmp_path / "nested" / "canaries.json"
    corpus.write_canaries(out)
    rows = json.loads(out.read_text())
    assert rows == [{"kind": c.kind, "value": c.value, "patient_mrn": c.patient_mrn}
                    for c in corpus.canaries()]  # fmt: skip


# --------------------------------------------------------------------------- laziness


def test_iter_drops_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[str] = []
    real = corpus_mod.render_series

    def counting(spec, *args, **kwargs):  # type: ignore[no-untyped-def]
        rendered.append(spec.series_uid)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(corpus_mod, "render_series", counting)
    small = SynthCorpus(5, n_patients=8, rows=32, columns=32, series_per_drop=2)
    it = small.iter_drops()
    assert rendered == []
    first = next(it)
    assert first.drop_id == "drop-0001" and len(rendered) == 2
    rest = list(it)
    assert len(rendered) == 8 and len(rest) == len(small.drop_keys()) - 1


def test_larger_series_and_drop_split() -> None:
    c = SynthCorpus(9, n_patients=3, sources=("site.x",), dicom_series_per_patient=3,
                    slices_per_series=5, notes_per_patient=4, rows=32, columns=48,
                    series_per_drop=4)  # fmt: skip
    drops = list(c.iter_drops())
    assert [d.drop_id for d in drops] == ["drop-0001", "drop-0002", "drop-0003", "drop-0004"]
    dicom = [f for d in drops for f in d.files if f.modality == "dicom"]
    assert len(dicom) == 3 * 3 * 5
    ds = pydicom.dcmread(io.BytesIO(dicom[-1].data))
    assert ds.pixel_array.shape == (32, 48)
    assert sum(f.modality == "notes" for d in drops for f in d.files) == 12
    blobs = [f.data for d in drops for f in d.files]
    assert all(any(k.value.encode() in b for b in blobs) for k in c.canaries())


# --------------------------------------------------------------------------- landing zone


def test_invalid_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        SynthCorpus(sources=("bad/source",))
    with pytest.raises(ValueError):
        SynthCorpus(sources=("a", "a"))
    with pytest.raises(ValueError):
        SynthCorpus(n_patients=0)
    for bad in ("../x", "/abs", "a//b", "drop.json", "a\\b", ""):
        with pytest.raises(ValueError):
            SynthFile(bad, b"", "notes")
    with pytest.raises(ValueError):
        SynthFile("x.bin", b"", "video")
    with pytest.raises(ValueError):
        SynthDrop("src", "drop-0001", (SynthFile("a", b"", "notes"), SynthFile("a", b"", "notes")))
    with pytest.raises(ValueError):
        SynthDrop("src", "..", ())
