"""DICOM fails closed: what Table E.1-1 does not name is removed or replaced, never passed through.

Names, MRNs and phone numbers are planted where the table has no row (an unknown public tag, UN
values, a private block, a Content Sequence's text and code meanings, nested free text, the
overlay and text groups, bytes after the dataset); none of them may be in any output byte.
"""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

KEY = b"fail-closed test secret, 32+ bytes long!"
NAME, MRN, PHONE = "Bartholomew Quist", "MRN7310925", "(617) 555-0199"
NEEDLES = [b"Bartholomew", b"Quist", b"7310925", b"555-0199", b"0199"]


@pytest.fixture(scope="module")
def plain() -> bytes:
    corpus = SynthCorpus(21, n_patients=1, slices_per_series=1, rows=16, columns=16)
    return next(f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom")


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "99LOCAL", meaning
    return item


def _text_item(concept: str, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.ConceptNameCodeSequence = Sequence([_code("121071", concept)])
    item.TextValue = text
    return item


def planted(data: bytes, *, trailing: bool = True) -> bytes:
    """``data`` with identifiers wherever the table has no row for them, saved as a Part 10 file."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add(DataElement(0x00509999, "LO", f"{NAME} {MRN}"))  # public, unknown to the data dictionary
    ds.add(DataElement(0x00720998, "UN", f"{NAME} {PHONE}".encode()))  # public, read as UN
    ds.add(DataElement(0x00290010, "LO", "SOME VENDOR 1.0"))  # a private block off the safe list
    ds.add(DataElement(0x00291010, "UN", f"{NAME} {MRN}".encode()))
    container = Dataset()
    container.RelationshipType, container.ValueType = "CONTAINS", "CONTAINER"
    container.ConceptNameCodeSequence = Sequence([_code("121070", f"Findings for {NAME}")])
    container.ContinuityOfContent = "SEPARATE"
    container.ContentSequence = Sequence([_text_item("Finding", f"Seen with {NAME}, call {PHONE}")])  # nested
    standard = _text_item("Finding", f"Findings: {NAME} {PHONE}")  # DCM 121071 "Finding": the standard's text
    standard.ConceptNameCodeSequence[0].CodingSchemeDesignator = "DCM"
    ds.ContentSequence = Sequence([_text_item(f"Reported by {NAME}", f"{MRN} {NAME}"), container, standard])
    intervention = Dataset()
    intervention.InterventionStatus = "PRE"
    intervention.InterventionDescription = f"Contrast given by {NAME} {PHONE}"  # ST: free text, no table row
    ds.InterventionSequence = Sequence([intervention])
    ds.add(DataElement(0x60000010, "US", 16))  # an overlay plane, with free text in every text attribute
    ds.add(DataElement(0x60000011, "US", 16))
    ds.add(DataElement(0x60000022, "LO", f"Overlay by {NAME}"))
    ds.add(DataElement(0x60000040, "CS", "G"))
    ds.add(DataElement(0x60000050, "SS", [1, 1]))
    ds.add(DataElement(0x60000100, "US", 1))
    ds.add(DataElement(0x60000102, "US", 0))
    ds.add(DataElement(0x60001500, "LO", f"{MRN} label"))
    ds.add(DataElement(0x60003000, "OW", b"\x00" * 32))
    ds.add(DataElement(0x60004000, "LT", f"Comments: {NAME} {PHONE}"))
    ds.add(DataElement(0x40004000, "LT", f"Text group: {NAME}"))  # retired Text group
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    appended = f"Patient {NAME} {MRN} {PHONE}".encode() if trailing else b""  # text after the dataset
    return out.getvalue() + appended


def leftovers(output: bytes) -> list[bytes]:
    return [n for n in NEEDLES if n in output or n.decode().encode("utf-16-le") in output]


def test_planted_identifiers_are_in_the_input_and_in_no_output_byte(plain: bytes) -> None:
    data = planted(plain)
    assert leftovers(data) == NEEDLES  # the planting is real
    out, report = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(data)
    assert leftovers(out) == []
    ds = pydicom.dcmread(io.BytesIO(out))
    assert 0x00509999 not in ds and 0x00720998 not in ds and not any(e.tag.is_private for e in ds)
    assert not any(0x6000 <= e.tag.group <= 0x60FF or e.tag.group == 0x4000 for e in ds)  # overlay plane gone
    assert max(ds.keys()) == 0x7FE00010  # nothing after the pixel data: the appended bytes were dropped
    assert ds.PixelData == pydicom.dcmread(io.BytesIO(plain)).PixelData
    # The content tree keeps its structure (value types, codes) with every written text replaced
    text, container, standard = ds.ContentSequence
    assert text.ValueType == "TEXT" and text.TextValue == "ANONYMIZED"
    assert text.ConceptNameCodeSequence[0].CodeValue == "121071"
    assert text.ConceptNameCodeSequence[0].CodeMeaning == "ANONYMIZED"  # a local scheme's meaning: free text
    assert standard.ConceptNameCodeSequence[0].CodeMeaning == "Finding" and standard.TextValue == "ANONYMIZED"
    assert container.ContentSequence[0].TextValue == "ANONYMIZED"
    assert ds.InterventionSequence[0].InterventionStatus == "PRE"
    assert report.removed and report.private_removed


def test_trailing_bytes_without_pixel_data_are_dropped(plain: bytes) -> None:
    ds = pydicom.dcmread(io.BytesIO(plain))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue() + f"ZZET {NAME} {MRN}".encode()
    assert 0x5A5A5445 in pydicom.dcmread(io.BytesIO(data))  # what pydicom makes of the appended text
    result, _ = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(data)
    assert leftovers(result) == [] and 0x5A5A5445 not in pydicom.dcmread(io.BytesIO(result))
    # appended bytes that read as a well-formed element the profile keeps (Manufacturer, action K):
    # pydicom lets it replace the value read before; out of tag order, the file is refused
    value = NAME.encode() + b" " * (len(NAME) % 2)
    element = struct.pack("<HH2sH", 0x0008, 0x0070, b"LO", len(value)) + value
    assert pydicom.dcmread(io.BytesIO(out.getvalue() + element)).Manufacturer == NAME
    with pytest.raises(DeidRejected) as err:
        DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(out.getvalue() + element)
    assert err.value.reason == "malformed_dicom" and NAME not in str(err.value)


def test_clean_graphics_option_removes_the_overlay_whole(plain: bytes) -> None:
    """No bitmap cleaner exists here, so "clean" an overlay means remove it (fail closed), with its text."""
    from clinical_pipelines.deid.dicom import DicomDeidPolicy
    from clinical_pipelines.deid.profile import DEFAULT_OPTIONS

    policy = DicomDeidPolicy(options=(*DEFAULT_OPTIONS, "cleanGraphOpt"))
    out, _ = DicomDeidentifier(Pseudonymizer(KEY), policy).deidentify_bytes(planted(plain))
    assert leftovers(out) == []
    ds = pydicom.dcmread(io.BytesIO(out))
    assert [tag for tag in ds.keys() if 0x6000 <= tag.group <= 0x60FF] == []  # noqa: SIM118


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_planted_identifiers_reach_no_curated_byte_through_the_stage(plain: bytes, store, keyring) -> None:
    from clinical_pipelines_tests.test_deid_residual import curated_bytes, run_stage

    # (validation refuses a file with bytes after its dataset before de-identification sees it)
    report = run_stage(store, keyring, {"a/planted.dcm": planted(plain, trailing=False)}, "dicom")
    assert len(report.items) == 1 and report.passed, report.residual_hits  # all planted removed: promoted
    assert leftovers(curated_bytes(store)) == []
