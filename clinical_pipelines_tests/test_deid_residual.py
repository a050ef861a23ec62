"""Residual-PHI scan at the de-identified stage: known identifiers and Presidio re-analysis of every
text-bearing output (DICOM string values, notes, table values); a finding keeps the item out of
curated/ (its original goes to quarantine) and fails the drop."""

from __future__ import annotations

import dataclasses
import functools
import io
import json

import pydicom
import pytest

from clinical_pipelines.deid.dicom import DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.residual import (
    dicom_identifiers,
    dicom_text_values,
    foreign_names,
    longer_than_a_code,
    residual_entities,
)
from clinical_pipelines.deid.stage import DropDeidentifier
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.validate.engine import DropValidator
from clinical_pipelines.zones import deid_record_key
from clinical_pipelines_tests.corpus import small_corpus

KEY = b"residual scan test secret, 32+ bytes long"
LEFTOVER_PHONE = "(303) 555-0142"
LEFTOVER_NAME = "Dr. Imogen Featherstonehaugh"


@functools.cache
def notes_engine() -> NoteDeidentifier:
    """One spaCy/Presidio engine for the module (loading it takes seconds)."""
    return NoteDeidentifier(Pseudonymizer(KEY))


def dicom_with(data: bytes, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def run_stage(store: ObjectStore, keyring: KeyRing, files: dict[str, bytes], modality: str,
              policy: DicomDeidPolicy | None = None):  # fmt: skip
    write_drop(store, "src", "d1", files)
    DropIngestor(store, keyring).ingest("src", "d1")
    assert DropValidator(store, keyring).validate("src", "d1", modality).passed
    pseudonymizer = Pseudonymizer(KEY)
    engine = DropDeidentifier(store, keyring, pseudonymizer, DicomDeidentifier(pseudonymizer, policy), notes_engine())
    return engine.deidentify("src", "d1", modality)


def curated_bytes(store: ObjectStore) -> bytes:
    return b"".join(store.open_read(o.key).read() for o in store.list("curated/"))


def test_clean_corpus_has_no_findings(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    files = {f.path: f.data for d in drops for f in d.files if f.modality in ("dicom", "notes")}
    for modality in ("dicom", "notes"):
        report = run_stage(store, keyring, files, modality)
        assert report.passed and report.residual_hits == {} and report.items, modality


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_identifier_in_a_kept_dicom_attribute_is_found_and_never_promoted(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    dicoms = {f.path: f.data for d in drops for f in d.files if f.modality == "dicom"}
    first = sorted(dicoms)[0]
    # Manufacturer is kept by the profile (action K): a name and phone written into it must be caught.
    dicoms[first] = dicom_with(dicoms[first], Manufacturer=f"{LEFTOVER_NAME} {LEFTOVER_PHONE}")
    report = run_stage(store, keyring, dicoms, "dicom")
    assert not report.passed
    assert report.residual_hits.get("presidio:PHONE_NUMBER") == 1 and report.residual_hits.get("presidio:PERSON")
    assert report.items_with_residual == 1 and len(report.items) == len(dicoms) - 1
    assert [q.reason for q in report.quarantined] == ["residual_phi"]
    assert LEFTOVER_PHONE.encode() not in curated_bytes(store) and b"Featherstonehaugh" not in curated_bytes(store)
    record = json.loads(store.open_read(deid_record_key("dicom", "src", "d1")).read())
    assert record["passed"] is False and len(record["items"]) == len(dicoms) - 1
    # the original bytes are kept (encrypted) in quarantine, with a reason that names kinds, not values
    quarantine = Quarantine(store, keyring)
    item = next(q for q in quarantine.records("quarantine/src/d1/") if q.reason == "residual_phi")
    assert "PHONE_NUMBER" in item.detail and LEFTOVER_PHONE not in item.detail
    assert quarantine.open_original(item).read() == dicoms[first]


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_safe_listed_private_tag_holding_the_name_fails_the_known_identifier_search(
    store: ObjectStore, keyring: KeyRing
) -> None:
    drops, _ = small_corpus()
    dicoms = {f.path: f.data for d in drops for f in d.files if f.modality == "dicom"}
    ds = pydicom.dcmread(io.BytesIO(next(iter(dicoms.values()))))
    block = next(e for e in ds if e.tag.is_private and e.tag.element < 0x100)  # the synthetic private creator
    policy = DicomDeidPolicy(safe_private=frozenset((str(block.value), e) for e in range(256)))
    report = run_stage(store, keyring, dicoms, "dicom", policy)
    assert not report.passed and report.items_with_residual == len(dicoms) and not report.items
    assert not list(store.list("curated/objects/"))


def test_re_analysis_ignores_our_own_replacements_but_not_leftovers() -> None:
    engine = notes_engine()
    clean = "Patient PSN-ABCDEFGHIJKLMNOP seen by Dr. [NAME] on 03/14/2024. Call [PHONE]. Age 90+."
    assert residual_entities(clean, engine.analyze(clean)) == {}
    dirty = f"Seen by {LEFTOVER_NAME}; call {LEFTOVER_PHONE}; e-mail imogen.f@example.org."
    found = residual_entities(dirty, engine.analyze(dirty))
    assert {"presidio:PERSON", "presidio:PHONE_NUMBER", "presidio:EMAIL_ADDRESS"} <= set(found)
    # short codes read out of context are not names, unless a pattern says so
    assert residual_entities("MONOCHROME2", engine.analyze("MONOCHROME2"), ner_persons=False) == {}
    assert foreign_names(["PSN-ABCDEFGHIJKLMNOP", "ANONYMIZED", "Roe^Jane"]) == 1


def test_values_longer_than_a_code_are_the_ones_whose_person_guesses_count() -> None:
    for code in ("HU", "MONOCHROME2", "ORIGINAL", "CT", "T1 SE", "3D"):
        assert not longer_than_a_code(code), code
    for written in ("John Smith", "Smith^John", "seen by Margaret Okonkwo", "GE MEDICAL SYSTEMS"):
        assert longer_than_a_code(written), written


@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_a_plain_name_in_a_kept_attribute_stops_promotion(store: ObjectStore, keyring: KeyRing) -> None:
    """No title, no field label: only spaCy's PERSON guess on a value longer than a code finds it."""
    drops, _ = small_corpus()
    dicoms = {f.path: f.data for d in drops for f in d.files if f.modality == "dicom"}
    first = sorted(dicoms)[0]
    dicoms[first] = dicom_with(dicoms[first], Manufacturer="Bartholomew Quist")  # Manufacturer: action K
    report = run_stage(store, keyring, dicoms, "dicom")
    assert not report.passed and report.residual_hits == {"presidio:PERSON": 1}
    assert report.items_with_residual == 1 and len(report.items) == len(dicoms) - 1
    assert b"Quist" not in curated_bytes(store)


def test_every_text_value_is_re_read_including_un_and_nested_ones() -> None:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    drops, _ = small_corpus()
    data = next(f.data for d in drops for f in d.files if f.modality == "dicom")
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add(DataElement(0x00090010, "LO", "SAFE VENDOR"))
    ds.add(DataElement(0x00091010, "UN", b"Margaret Okonkwo "))  # a UN value (e.g. safe-listed private)
    ds.add(DataElement(0x00091011, "UN", b"\x01\x00\x02\x00\xff\xfe\x00\x00"))  # binary UN: not text
    standard, written = Dataset(), Dataset()
    standard.CodeValue, standard.CodingSchemeDesignator, standard.CodeMeaning = "121071", "DCM", "Finding"
    written.CodeValue, written.CodingSchemeDesignator, written.CodeMeaning = "121071", "DCM", "Seen by Okonkwo"
    ds.ConceptNameCodeSequence = Sequence([standard])
    item = Dataset()
    item.UnformattedTextValue = "nested free text"
    item.ConceptCodeSequence = Sequence([written])
    ds.RequestAttributesSequence = Sequence([item])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    _names, texts = dicom_text_values(out.getvalue())
    assert {"Margaret Okonkwo", "nested free text", "Seen by Okonkwo"} <= texts
    assert "Finding" not in texts  # the standard's own meaning for (DCM, 121071): written by no person
    assert not any("\x01" in t or "\ufffd" in t for t in texts)


def test_known_identifiers_include_what_the_fail_closed_rules_replace() -> None:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from clinical_pipelines.deid.profile import compile_profile

    drops, _ = small_corpus()
    ds = pydicom.dcmread(io.BytesIO(next(f.data for d in drops for f in d.files if f.modality == "dicom")))
    ds.add(DataElement(0x00509999, "LO", "Unknown Tag Holder"))
    ds.add(DataElement(0x60000022, "LO", "Overlay Writer"))
    item = Dataset()
    item.ValueType, item.TextValue = "TEXT", "Content Text Writer"
    item.ConceptNameCodeSequence = Sequence([Dataset()])
    item.ConceptNameCodeSequence[0].CodeValue = "121071"
    item.ConceptNameCodeSequence[0].CodeMeaning = "Meaning Writer"
    ds.ContentSequence = Sequence([item])
    ds.Manufacturer = "Kept Manufacturer"  # action K: not an identifier of the original
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    actions = compile_profile().actions
    found = {v for values in dicom_identifiers(out.getvalue(), actions).values() for v in values}
    assert {"Unknown Tag Holder", "Overlay Writer", "Content Text Writer", "Meaning Writer"} <= found
    assert "Kept Manufacturer" not in found and "121071" not in found
    # with a text cleaner, cleaned text keeps its harmless part: not searched
    cleaned = {
        v for values in dicom_identifiers(out.getvalue(), actions, kept=frozenset("KUC")).values() for v in values
    }
    assert "Content Text Writer" not in cleaned and "Unknown Tag Holder" in cleaned


def test_shifted_dates_in_every_written_form_are_no_findings() -> None:
    """Dates are rewritten on purpose: Presidio's DATE_TIME reading of a shifted date is no residual PHI,
    while a name left in the same note still is."""
    from clinical_pipelines.deid.findings import note_findings

    engine = notes_engine()
    text = ("MRN: 4417203. Admitted 2021-03-04, seen on March 5, 2021 and 30-MAR-2022; follow-up 04/13/2022.\n"
            "Discharged on Apr 13th 2022 by the night team.")  # fmt: skip
    result = engine.deidentify(text)
    assert "2021-03-04" not in result.text and "March 5, 2021" not in result.text
    assert note_findings(text, result, engine.analyze(result.text)) == {}
    leaked = dataclasses.replace(result, text=result.text + " Family: wife Evangeline Castellano called.")
    assert note_findings(text, leaked, engine.analyze(leaked.text))
