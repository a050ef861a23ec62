"""The de-identified stage's notes over warm worker processes: the same outputs, findings and quarantine as in
process, and a note the engine fails on quarantined without taking its batch along."""

from __future__ import annotations

from pathlib import Path

from clinical_pipelines.deid import notes_pool
from clinical_pipelines.deid.dicom import DicomDeidentifier
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.stage import DeidStageReport, DropDeidentifier
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage.keys import KeyRing, local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.validate.engine import DropValidator
from clinical_pipelines.zones import curated_object_key, deid_record_key
from clinical_pipelines_tests.corpus import small_corpus

KEY = b"notes pool test secret, 32+ bytes long!!"


def _files() -> dict[str, bytes]:
    drops, _ = small_corpus()
    files = {f.path: f.data for d in drops for f in d.files if f.modality == "notes"}
    assert len(files) >= 4
    return files


def _run(
    root: Path, files: dict[str, bytes], workers: int, notes: type[NoteDeidentifier] = NoteDeidentifier
) -> tuple[DeidStageReport, LocalObjectStore, KeyRing]:
    """Land, ingest and validate ``files`` as one drop, then de-identify its notes with a ``notes`` engine."""
    store = LocalObjectStore(root / "data")
    keyring = local_keyring(root / "keys")
    write_drop(store, "src", "d1", files)
    DropIngestor(store, keyring).ingest("src", "d1")
    assert DropValidator(store, keyring).validate("src", "d1", "notes").passed
    pseudonymizer = Pseudonymizer(KEY)
    engine = DropDeidentifier(store, keyring, pseudonymizer, DicomDeidentifier(pseudonymizer),
                              notes(pseudonymizer), workers=workers, pool_min_files=1)  # fmt: skip
    return engine.deidentify("src", "d1", "notes"), store, keyring


def test_pooled_notes_are_the_in_process_outputs_findings_and_records(tmp_path: Path) -> None:
    files = _files()
    inline, inline_store, _ = _run(tmp_path / "inline", files, workers=1)
    pooled, pooled_store, _ = _run(tmp_path / "pooled", files, workers=2)
    assert len(inline.items) == len(files)
    assert [(i.sha256, i.size, i.patient_ids) for i in pooled.items] == [
        (i.sha256, i.size, i.patient_ids) for i in inline.items
    ]
    assert all(i.patient_ids for i in pooled.items)
    assert pooled.identifiers_searched == inline.identifiers_searched > 0
    assert pooled.residual_hits == inline.residual_hits
    record = deid_record_key("notes", "src", "d1")
    assert pooled_store.open_read(record).read() == inline_store.open_read(record).read()
    for item in pooled.items:
        key = curated_object_key(item.sha256)
        assert pooled_store.open_read(key).read() == inline_store.open_read(key).read()


class _FailsOnMarker(NoteDeidentifier):
    """An engine that fails on any batch holding a marked note (as spaCy does on a text it cannot take)."""

    def deidentify_many(self, texts, patient_keys=None, batch_size=32):  # type: ignore[no-untyped-def]
        if any("FAIL-THIS-NOTE" in t for t in texts):
            raise MemoryError("cannot take this note")
        return super().deidentify_many(texts, patient_keys, batch_size)


def test_a_note_the_engine_fails_on_is_quarantined_and_its_batch_goes_on(tmp_path: Path) -> None:
    files = _files()
    marked = sorted(files)[1]
    files[marked] = files[marked] + b"\nFAIL-THIS-NOTE\n"
    pseudonymizer = Pseudonymizer(KEY)
    outcomes = notes_pool.judge_notes(_FailsOnMarker(pseudonymizer), pseudonymizer,
                                      [files[n].decode() for n in sorted(files)])  # fmt: skip
    assert [o.error for o in outcomes] == [None if n != marked else "MemoryError" for n in sorted(files)]
    assert all(o.out for n, o in zip(sorted(files), outcomes, strict=True) if n != marked)
    assert all(b"cannot take" not in o.out for o in outcomes)


def test_the_pool_is_warm_across_drops(tmp_path: Path) -> None:
    pseudonymizer = Pseudonymizer(KEY)
    engine = NoteDeidentifier(pseudonymizer)
    pool = notes_pool.warm_notes_pool(engine, pseudonymizer, 2)
    assert notes_pool.warm_notes_pool(NoteDeidentifier(Pseudonymizer(KEY)), Pseudonymizer(KEY), 2) is pool
    (outcomes,) = list(pool.map([["Seen by Dr. Alvarez on 03/04/2021, MRN 4455667."]]))
    assert outcomes[0].error is None and b"Alvarez" not in outcomes[0].out
    other = notes_pool.warm_notes_pool(NoteDeidentifier(pseudonymizer, score_threshold=0.5), pseudonymizer, 2)
    assert other is not pool  # other settings: another pool (one per process), the old one stopped


def test_the_stage_quarantines_a_failed_note_with_its_original_bytes(tmp_path: Path) -> None:
    files = _files()
    marked = sorted(files)[0]
    files[marked] = files[marked] + b"\nFAIL-THIS-NOTE\n"
    report, store, keyring = _run(tmp_path, files, workers=1, notes=_FailsOnMarker)
    assert len(report.items) == len(files) - 1
    (failed,) = report.quarantined
    assert failed.reason == "engine_error" and failed.detail == "MemoryError while de-identifying"
    assert Quarantine(store, keyring).open_original(failed).read() == files[marked]
