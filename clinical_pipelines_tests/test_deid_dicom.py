"""DICOM de-identification: PS3.15 Basic Profile from the shipped Table E.1-1, keyed UIDs and shifts."""

from __future__ import annotations

import io
import json
import re
from importlib.metadata import entry_points
from pathlib import Path

import pydicom
import pytest

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.profile import compile_profile, table_rows
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

SHARED_TABLE = (
    Path(__file__).resolve().parents[2] / "shared/reference/dicom-ps3.15/confidentiality_profile_attributes.json"
)
UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
KEY = b"a test de-identification secret, 32+ bytes long"


@pytest.fixture(scope="module")
def corpus() -> tuple[list[bytes], list[str]]:
    c = SynthCorpus(13, n_patients=3, slices_per_series=3, rows=32, columns=32)
    files = [f.data for d in c.iter_drops() for f in d.files if f.modality == "dicom"]
    return files, [x.value for x in c.canaries() if len(x.value) >= 6]


def read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_shipped_table_is_the_standards_table() -> None:
    rows = table_rows()
    assert len(rows) == 621
    if SHARED_TABLE.exists():  # cross-check against the team's reference copy when it is beside the repo
        reference = {r["tag"]: r for r in json.loads(SHARED_TABLE.read_text())}
        assert len(reference) == len(rows)
        for row in rows:
            ref = reference[row["tag"]]
            assert row["action"] == ref["basicProfile"], row["tag"]
            assert {k: v for k, v in row.items() if k.endswith("Opt")} == {
                k: v for k, v in ref.items() if k.endswith("Opt")
            }, row["tag"]
    profile = compile_profile()
    assert profile.actions[0x00100010] == "Z" and profile.actions[0x00080018] == "U"
    assert profile.actions[0x00080020] == "C"  # modified dates option: Study Date is shifted


def test_no_planted_identifier_survives_the_default_profile(corpus: tuple[list[bytes], list[str]]) -> None:
    files, canaries = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    outputs = [deid.deidentify_bytes(data)[0] for data in files]
    left = sorted({value for value in canaries for out in outputs if value.encode() in out})
    assert left == []


def test_uids_are_remapped_consistently_and_keep_the_hierarchy(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    before = [read(f) for f in files]
    after = [read(deid.deidentify_bytes(f)[0]) for f in files]
    mapping: dict[str, str] = {}
    for b, a in zip(before, after, strict=True):
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            old, new = str(b[keyword].value), str(a[keyword].value)
            assert new != old and UID.match(new) and len(new) <= 64
            assert mapping.setdefault(old, new) == new  # same input UID, same output UID
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
        assert a.SOPClassUID == b.SOPClassUID  # class UIDs are not identifiers
        assert a.PixelData == b.PixelData  # copied as bytes
    assert len({str(a.SOPInstanceUID) for a in after}) == len(after)
    series = {}
    for b, a in zip(before, after, strict=True):
        series.setdefault(str(b.SeriesInstanceUID), set()).add(str(a.SeriesInstanceUID))
    assert all(len(v) == 1 for v in series.values())
    again = read(DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(files[0])[0])  # a new process, same key
    assert again.SOPInstanceUID == after[0].SOPInstanceUID
    other = read(
        DicomDeidentifier(Pseudonymizer(b"another secret of at least 32 bytes!!")).deidentify_bytes(files[0])[0]
    )
    assert other.SOPInstanceUID != after[0].SOPInstanceUID


def test_patient_pseudonym_and_date_shift_follow_the_patient(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    pseudonymizer = Pseudonymizer(KEY)
    deid = DicomDeidentifier(pseudonymizer)
    import datetime

    for data in files:
        original = read(data)
        out = read(deid.deidentify_bytes(data)[0])
        mrn = str(original.PatientID)
        assert out.PatientID == pseudonymizer.patient_id(mrn) == str(out.PatientName)
        # Study Date and Time move together by the patient's whole offset (days + a time-of-day part)
        start = datetime.datetime.strptime(original.StudyDate + original.StudyTime[:6], "%Y%m%d%H%M%S")
        expected = start + pseudonymizer.datetime_shift(mrn)
        assert out.StudyDate + out.StudyTime[:6] == expected.strftime("%Y%m%d%H%M%S")
        assert out.StudyTime[:6] != original.StudyTime[:6]
        assert out.PatientIdentityRemoved == "YES" and out.LongitudinalTemporalInformationModified == "MODIFIED"
        codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
        assert codes[0] == "113100" and "113107" in codes
        assert out.PatientSex == original.PatientSex  # retain patient characteristics
    old = read(files[0])
    old.PatientAge = "097Y"
    assert read(deid.deidentify_bytes(_saved(old))[0]).PatientAge == "090Y"  # Safe Harbor: 90 or older


def test_report_carries_cohort_attributes_from_the_output_only(corpus: tuple[list[bytes], list[str]]) -> None:
    files, canaries = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    for data in files:
        out_bytes, report = deid.deidentify_bytes(data)
        out = read(out_bytes)
        attributes = report.attributes
        assert attributes["modality"] == out.Modality and attributes["study_date"] == out.StudyDate
        assert attributes["study_uid"] == out.StudyInstanceUID and attributes["series_uid"] == out.SeriesInstanceUID
        assert attributes.get("patient_sex") == (out.get("PatientSex") or None)
        assert not {v for v in attributes.values() for c in canaries if c in v}


def test_private_tags_and_nested_identifiers_are_removed(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    original = read(files[0])
    assert any(e.tag.is_private for e in original.iterall())
    out = read(DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(files[0])[0])
    assert not any(e.tag.is_private for e in out.iterall())
    for element in out.iterall():  # nothing anywhere (sequences included) still holds the MRN
        assert str(original.PatientID) not in str(element.value)


def test_safe_private_list_and_device_identity_option(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    original = read(files[0])
    private = next(e for e in original.iterall() if e.tag.is_private and e.tag.element >= 0x1000)
    creator = str(original[(private.tag.group << 16) | (private.tag.element >> 8)].value)
    policy = DicomDeidPolicy(
        options=("rtnDevIdOpt", "rtnLongModifDatesOpt"), safe_private=frozenset({(creator, private.tag.element & 0xFF)})
    )
    out = read(DicomDeidentifier(Pseudonymizer(KEY), policy).deidentify_bytes(files[0])[0])
    assert private.tag in out
    assert out.StationName == original.StationName  # retained with the device identity option


def test_burned_in_text_and_malformed_dates_are_refused(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    for change in ({"BurnedInAnnotation": "YES"}, {"Modality": "US"}, {"StudyDate": "2024-13-45"}):
        ds = read(files[0])
        for keyword, value in change.items():
            setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        with pytest.raises(DeidRejected) as err:
            deid.deidentify_bytes(buffer.getvalue())
        assert err.value.reason in ("burned_in_annotation", "malformed_date")
        assert str(ds.PatientID) not in str(err.value)
    with pytest.raises(DeidRejected, match="malformed_dicom"):
        deid.deidentify_bytes(b"not a dicom file")


def test_uids_inside_referenced_image_sequences_are_remapped(corpus: tuple[list[bytes], list[str]]) -> None:
    """X/Z/U* on a sequence keeps the sequence and remaps the UIDs inside it (regression)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    files, _ = corpus
    ds = read(files[0])
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.ReferencedImageSequence = Sequence([item])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    pseudonymizer = Pseudonymizer(KEY)
    out = read(DicomDeidentifier(pseudonymizer).deidentify_bytes(buffer.getvalue())[0])
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == pseudonymizer.uid("1.2.3.4.5.6.7.8.9")
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_file_meta_keeps_what_reading_needs_and_drops_system_names(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    ds = read(files[0])
    ds.file_meta.SourceApplicationEntityTitle = "ST_MARYS_CT1"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = b"secret\x00"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out_bytes, _ = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(buffer.getvalue())
    assert b"ST_MARYS_CT1" not in out_bytes and b"secret" not in out_bytes
    meta = read(out_bytes).file_meta
    assert meta.MediaStorageSOPInstanceUID == read(out_bytes).SOPInstanceUID != ds.SOPInstanceUID
    assert meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert "PrivateInformationCreatorUID" not in meta


def _after_meta(data: bytes) -> bytes:
    """The dataset bytes after the file meta group, found by reading it."""
    fp = io.BytesIO(data)
    pydicom.filereader.read_preamble(fp, False)
    pydicom.filereader._read_file_meta_info(fp)
    return data[fp.tell() :]


def test_byte_copying_writer_matches_pydicoms_writer(corpus: tuple[list[bytes], list[str]]) -> None:
    """The fast writer copies untouched elements as bytes; the result must read back as exactly
    what pydicom's own writer produces for the same de-identified dataset."""
    files, _ = corpus
    samples = list(files)
    # pydicom's bundled test files, read from the package folder: get_testdata_files() would try the
    # network for its external files.
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    # ... and the pydicom-data package's files (other vendors, compressed syntaxes), found by its entry point
    folders += [Path(e.load()().data_path) for e in entry_points(group="pydicom.data.external_sources")]
    assert len(folders) == 2, "pydicom-data is a test dependency"
    for folder in folders:
        for path in sorted(folder.glob("*.dcm")):
            if path.stat().st_size < 1_000_000:  # the large ones only add time
                samples.append(path.read_bytes())
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    compared = 0
    for data in samples:
        try:
            fast, _ = deid.deidentify_bytes(data)
            reference = pydicom.dcmread(io.BytesIO(data))
            deid.deidentify_dataset(reference)
            buffer = io.BytesIO()
            reference.save_as(buffer, enforce_file_format=True)
        except (DeidRejected, AttributeError, ValueError):
            continue  # refused or unwritable either way
        a, b = read(fast), read(buffer.getvalue())
        assert a == b
        # pydicom's writer adds its own Implementation Version Name where the original had none; group
        # lengths differ by that element.
        ignored = (0x00020000, 0x00020013)
        assert [e for e in a.file_meta if e.tag not in ignored] == [e for e in b.file_meta if e.tag not in ignored]
        assert a.file_meta.FileMetaInformationGroupLength == len(fast) - 144 - len(_after_meta(fast))
        assert fast[:128] == b"\0" * 128  # the preamble never carries anything over
        compared += 1
    assert compared >= 70


# -- odd but parseable input: a clear reason or a correct output, never a crash --------------------
def _saved(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _nested(depth: int, leaf: pydicom.Dataset) -> pydicom.Dataset:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = leaf
    for _ in range(depth):
        outer = Dataset()
        outer.ContentSequence = Sequence([item])
        item = outer
    return item


def test_sequences_nested_too_deep_are_refused_and_deep_real_ones_walked(corpus: tuple[list[bytes], list[str]]) -> None:
    from pydicom.dataset import Dataset

    files, _ = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    leaf = Dataset()
    leaf.PersonName = "Deepnest^Hidden"
    ds = read(files[0])
    ds.ContentSequence = _nested(10, leaf).ContentSequence
    out, _ = deid.deidentify_bytes(_saved(ds))
    assert b"Deepnest" not in out and read(out).ContentSequence  # walked all the way down
    ds.ContentSequence = _nested(60, leaf).ContentSequence
    with pytest.raises(DeidRejected) as err:
        deid.deidentify_bytes(_saved(ds))
    assert err.value.reason == "sequence_too_deep"


def test_huge_sequences_are_copied_exactly(corpus: tuple[list[bytes], list[str]]) -> None:
    """Thousands of items: element positions inside sequences are relative in pydicom; the byte-copying
    writer must place every item's bytes correctly (regression: it once copied a neighbour's)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    files, _ = corpus
    ds = read(files[0])
    items = []
    for i in range(3000):
        item = Dataset()
        item.CodeValue, item.CodeMeaning, item.PersonName = str(i), f"finding {i}", f"Witness^{i:05d}"
        items.append(item)
    ds.ContentSequence = Sequence(items)
    data = _saved(ds)
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    out_bytes = deid.deidentify_bytes(data)[0]
    out = read(out_bytes)
    reference = read(data)
    deid.deidentify_dataset(reference)
    assert out == read(_saved(reference))
    assert [item.CodeValue for item in out.ContentSequence] == [str(i) for i in range(3000)]
    assert b"Witness" not in out_bytes and {str(item.PersonName) for item in out.ContentSequence} == {"ANONYMIZED"}


def test_bad_character_sets_and_odd_vrs_do_not_crash(corpus: tuple[list[bytes], list[str]]) -> None:
    files, _ = corpus
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    ds = read(files[0])
    name = str(ds.PatientName)
    ds.SpecificCharacterSet = "ISO_IR 999"  # no such character set
    out, _ = deid.deidentify_bytes(_saved(ds))
    assert name.encode() not in out and read(out).PatientID.startswith("PSN-")

    ds = read(files[0])
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 declared, invalid bytes given
    ds.add_new(0x00081040, "LO", b"Cardiolog\xe9 \xff\xfe")  # Institutional Department Name (X)
    ds.add_new(0x00081090, "LO", b"Scann\xe9r \xff")  # Manufacturer's Model Name (K)
    out, _ = deid.deidentify_bytes(_saved(ds))
    assert b"Cardiolog" not in out and 0x00081040 not in read(out)

    data = bytearray(_saved(read(files[0])))
    at = data.find(b"\x08\x00\x70\x00LO")  # Manufacturer: an explicit VR nobody defined
    data[at + 4 : at + 6] = b"ZZ"
    try:
        out, _ = deid.deidentify_bytes(bytes(data))
    except DeidRejected as rejected:
        assert rejected.reason in ("malformed_dicom", "deid_failed", "unwritable_dicom")
    else:
        assert name.encode() not in out and read(out).PatientIdentityRemoved == "YES"


def test_pixel_cleaning_blanks_the_masked_region_only_when_asked(corpus: tuple[list[bytes], list[str]]) -> None:
    from clinical_pipelines.deid.pixels import PixelMask

    files, _ = corpus
    ds = read(files[0])
    ds.Modality = "US"  # routinely carries burned-in text
    ds.PixelData = (ds.pixel_array * 0 + 77).astype(ds.pixel_array.dtype).tobytes()
    data = _saved(ds)
    with pytest.raises(DeidRejected, match="burned_in_annotation"):
        DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(data)
    policy = DicomDeidPolicy(pixel_masks=(("US", PixelMask(((0.0, 0.0, 0.25, 1.0),))),))
    out_bytes, report = DicomDeidentifier(Pseudonymizer(KEY), policy).deidentify_bytes(data)
    out = read(out_bytes)
    pixels = out.pixel_array
    banner = ds.Rows // 4
    assert (pixels[:banner] == 0).all() and (pixels[banner:] == 77).all()
    assert report.pixels_blanked == banner * ds.Columns
    assert out.BurnedInAnnotation == "NO" and "113101" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    # other modalities keep their pixel bytes untouched
    ct_out, ct_report = DicomDeidentifier(Pseudonymizer(KEY), policy).deidentify_bytes(files[0])
    assert read(ct_out).PixelData == read(files[0]).PixelData and ct_report.pixels_blanked == 0

    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([b"\x00" * 64])
    with pytest.raises(DeidRejected, match="pixel_cleaning_unsupported"):
        DicomDeidentifier(Pseudonymizer(KEY), policy).deidentify_bytes(_saved(ds))
