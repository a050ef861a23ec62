"""Residual-PHI scan at the de-identified stage: known identifiers and Presidio re-analysis of every
text-bearing output (DICOM string values, notes, table values); a finding keeps the item out of
curated/ (its original goes to quarantine) and fails the drop."""

from __future__ import annotations

import functools
import io
import json

import pydicom
import pytest

from clinical_pipelines.deid.dicom import DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.residual import foreign_names, residual_entities
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
