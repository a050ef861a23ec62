"""The residual scan converts only the elements that may be text (:func:`residual._text_elements`);
its results must equal those of a plain pydicom reading that converts every element."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterator

import pydicom
import pytest

from clinical_pipelines.deid import residual
from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier
from clinical_pipelines.deid.findings import DicomFindings
from clinical_pipelines.deid.profile import compile_profile
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

KEY = b"residual fast path test secret, 32+ bytes"


def _plain(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """``fn`` with every element converted, as iterating a pydicom Dataset does."""
    fast = residual._text_elements
    residual._text_elements = lambda ds, store=True: iter(ds)  # type: ignore[assignment]
    try:
        return fn(*args, **kwargs)
    finally:
        residual._text_elements = fast


def _assert_same(data: bytes, actions: dict[int, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = _plain(residual.dicom_text_values, data)
        except Exception as exc:  # a plain reading refuses it: so must the fast one
            with pytest.raises(type(exc)):
                residual.dicom_text_values(data)
            with pytest.raises(type(exc)):
                residual.dicom_identifiers(data, actions)
            return
        assert residual.dicom_text_values(data) == expected
        for kept in (frozenset("KU"), frozenset("KUC")):
            assert residual.dicom_identifiers(data, actions, kept=kept) == _plain(
                residual.dicom_identifiers, data, actions, kept=kept
            )


def _crafted(wrong_length: bool = False) -> Iterator[bytes]:
    """Nested sequences, content text, private and unknown tags, UN text and binary, a wrong-length US,
    in explicit and implicit VR little endian; ``wrong_length``: a US rewritten as an FD of 4 bytes (a
    plain reading refuses it unless ``pydicom.config.convert_wrong_length_to_UN``, then reads it as UN)."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
        ds.PatientName, ds.PatientID, ds.PatientAge = "Okonkwo^Margaret", "MRN-0042-1", "047Y"
        ds.InstitutionName, ds.StudyDescription = "Saint Elsewhere Hospital", "CT chest Dr Featherstone"
        ds.Rows, ds.Columns, ds.SliceThickness = 4, 4, "1.25"
        ds.add(DataElement(0x00090010, "LO", "SAFE VENDOR"))
        ds.add(DataElement(0x00091010, "UN", b"Margaret Okonkwo "))
        ds.add(DataElement(0x00091011, "UN", b"\x01\x00\x02\x00\xff\xfe\x00\x00"))
        ds.add(DataElement(0x00091012, "LO", ["Ward 7 North", "Bed 12"]))
        ds.add(DataElement(0x00509999, "LO", "Unknown Tag Holder 1234"))
        ds.add(DataElement(0x60000022, "LO", "Overlay Writer"))
        ds.add(DataElement(0x00181030, "UN", b"Protocol by Imogen Smith"))  # known tag written as UN
        ds.add(DataElement(0x00280106, "US", [1, 2]))
        item = Dataset()
        item.ValueType, item.TextValue = "TEXT", "Content Text Writer 555-0142"
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121071", "DCM", "Finding"
        written = Dataset()
        written.CodeValue, written.CodingSchemeDesignator, written.CodeMeaning = "121071", "DCM", "Seen by Okonkwo"
        item.ConceptNameCodeSequence = Sequence([code])
        inner = Dataset()
        inner.ValueType, inner.TextValue = "TEXT", "Deeply nested note by Smith"
        inner.ConceptCodeSequence = Sequence([written])
        item.ContentSequence = Sequence([inner])
        ds.ContentSequence = Sequence([item])
        request = Dataset()
        request.UnformattedTextValue = "nested free text"
        request.add(DataElement(0x00291010, "UN", b"nested UN text value"))
        ds.RequestAttributesSequence = Sequence([request])
        out = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(out, enforce_file_format=True)
        data = out.getvalue()
        if wrong_length and syntax == ExplicitVRLittleEndian:
            assert b"\x28\x00\x06\x01US\x04\x00" in data
            data = data.replace(b"\x28\x00\x06\x01US\x04\x00", b"\x28\x00\x06\x01FD\x04\x00")
        yield data


def test_crafted_files_give_the_same_findings() -> None:
    actions = compile_profile().actions
    files = list(_crafted())
    for data in [*files, *_crafted(wrong_length=True)]:
        _assert_same(data, actions)
    names, texts = residual.dicom_text_values(files[0])
    assert {"Margaret Okonkwo", "nested free text", "nested UN text value", "Seen by Okonkwo"} <= texts
    assert "Protocol by Imogen Smith" in texts and "Deeply nested note by Smith" in texts
    assert "Okonkwo^Margaret" in names


def test_a_wrong_length_value_read_as_un_gives_the_same_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pydicom.config, "convert_wrong_length_to_UN", True)
    for data in _crafted(wrong_length=True):
        _assert_same(data, compile_profile().actions)


def test_generated_corpus_originals_and_outputs_give_the_same_findings() -> None:
    corpus = SynthCorpus(29, n_patients=2, slices_per_series=3, notes_per_patient=0)
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    actions = deid.profile.actions
    files = [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"]
    assert files
    for data in files:
        _assert_same(data, actions)
        try:
            output = deid.deidentify_bytes(data)[0]
        except DeidRejected:
            continue
        _assert_same(output, actions)


_BUNDLED = [p for p in pydicom.data.get_testdata_files() if os.path.isfile(p)]


@pytest.mark.parametrize("path", _BUNDLED, ids=lambda p: p.rsplit("/", 1)[-1])
def test_pydicom_bundled_files_give_the_same_findings(path: str) -> None:
    with open(path, "rb") as f:
        _assert_same(f.read(), compile_profile().actions)


def _values(data: bytes) -> list[tuple[int, str, list[str]]]:
    """(tag, VR, values) of every element the fast path reads, nested ones included, as it reads them."""
    found: list[tuple[int, str, list[str]]] = []

    def walk(ds: object) -> None:
        for element in residual._text_elements(ds):
            if element.VR == "SQ":
                for item in element.value or ():
                    walk(item)
            elif element.VR in residual._TEXT_VRS:
                found.append((int(element.tag), element.VR, [str(v) for v in residual._values_of(element.value)]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walk(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True))
    return found


@pytest.mark.parametrize("path", _BUNDLED, ids=lambda p: p.rsplit("/", 1)[-1])
def test_text_read_from_raw_bytes_is_pydicom_s_value(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    try:
        expected = _plain(_values, data)
    except Exception:
        return  # refused by a plain reading: test_pydicom_bundled_files_give_the_same_findings covers it
    assert _values(data) == expected


def test_crafted_and_generated_text_is_pydicom_s_value() -> None:
    corpus = SynthCorpus(29, n_patients=1, slices_per_series=2, notes_per_patient=0)
    files = [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"]
    for data in [*_crafted(), *files]:
        assert _values(data) == _plain(_values, data)


def _one_read_matches_two(data: bytes, findings: DicomFindings) -> None:
    deid = findings.deidentifier
    try:
        expected, _ = deid.deidentify_bytes(data)
    except DeidRejected as refused:
        with pytest.raises(DeidRejected) as again:
            findings.deidentify(data)
        assert again.value.reason == refused.reason
        return
    out, _, hits = findings.deidentify(data)
    assert out == expected  # reading the identifiers first changed nothing the writer copies
    assert hits == findings(data, expected)  # and they are the ones a second reading finds


@pytest.mark.parametrize("path", _BUNDLED, ids=lambda p: p.rsplit("/", 1)[-1])
def test_one_reading_for_identifiers_and_deidentification_changes_no_output_byte(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _one_read_matches_two(data, DicomFindings(DicomDeidentifier(Pseudonymizer(KEY)), None))


def test_one_reading_on_crafted_and_generated_files_changes_no_output_byte() -> None:
    corpus = SynthCorpus(29, n_patients=2, slices_per_series=2, notes_per_patient=0)
    files = [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"]
    findings = DicomFindings(DicomDeidentifier(Pseudonymizer(KEY)), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for data in [*_crafted(), *files]:
            _one_read_matches_two(data, findings)
    # the crafted file's planted values are among the identifiers read before de-identification
    identifiers = findings.identifiers_of(pydicom.dcmread(io.BytesIO(next(_crafted()))))
    flat = {v for values in identifiers.values() for v in values}
    assert {"Margaret Okonkwo", "Protocol by Imogen Smith", "Deeply nested note by Smith"} <= flat


def test_the_header_is_cut_where_the_pixel_data_ends_the_file_with_or_without_a_length_hint() -> None:
    from clinical_pipelines.deid.findings import header_bytes

    corpus = SynthCorpus(29, n_patients=1, slices_per_series=1, notes_per_patient=0)
    data = next(f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom")
    output = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(data)[0]
    pixels = len(pydicom.dcmread(io.BytesIO(output)).PixelData)
    cut = header_bytes(output)
    assert len(cut) == len(output) - pixels and b"\xe0\x7f\x10\x00" in cut[-12:]
    assert header_bytes(output, pixels) == cut
    assert header_bytes(output, pixels - 2) == cut  # a wrong hint: the backward search decides
    assert header_bytes(output + b"\0\0", pixels) == output + b"\0\0"  # pixel data no longer ends the file
