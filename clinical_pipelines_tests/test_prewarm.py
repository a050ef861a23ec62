"""Warm worker pools started before the drops that use them: which pools a landing's drop.json files ask for,
that the workers start (and load) without being waited for, and that a small drop then goes over the warm pool
with the same bytes as in process."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from clinical_pipelines import warm_pool
from clinical_pipelines.deid.dicom import DicomDeidentifier
from clinical_pipelines.deid.dicom_pool import pool_is_warm
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.notes_pool import notes_pool_is_warm
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.stage import DropDeidentifier, prewarm_pools
from clinical_pipelines.landing.expected import declared_modalities
from clinical_pipelines.landing.sniff import modality_by_name
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage.keys import local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.validate.engine import DropValidator
from clinical_pipelines.zones import curated_object_key, deid_record_key
from clinical_pipelines_tests.corpus import small_corpus

KEY = b"prewarm test secret, at least 32 bytes!!"


def test_a_name_suggests_a_modality_only_where_it_can() -> None:
    assert modality_by_name("dicom/series1/0001.dcm") == "dicom"
    assert modality_by_name("export/IM000123") == "dicom"  # PACS exports often carry no suffix
    assert modality_by_name("labs/Results.CSV") == "tabular"
    assert modality_by_name("notes/discharge.txt") == "notes"
    assert modality_by_name("scan.pdf") is None


def test_declared_modalities_count_what_each_drop_json_lists(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    write_drop(store, "src", "d1", {"a/1.dcm": b"x", "a/2.dcm": b"y", "n/1.txt": b"note", "t.csv": b"a,b\n1,2\n"})
    write_drop(store, "src", "d2", {"n/2.txt": b"note", "blob.bin": b"?"})
    # a declared modality wins over the name; a broken drop.json counts nothing, and stops nothing
    store.put_bytes("landing/src/d3/x.dat", b"z")
    doc = {"drop_id": "d3", "source": "src", "files": [
        {"path": "x.dat", "size": 1, "sha256": "0" * 64, "modality": "notes"}]}  # fmt: skip
    store.put_bytes("landing/src/d3/drop.json", json.dumps(doc).encode())
    store.put_bytes("landing/src/d4/drop.json", b"{not json")
    counts = declared_modalities(store, [("src", "d1"), ("src", "d2"), ("src", "d3"), ("src", "d4"), ("src", "gone")])
    assert dict(counts) == {"dicom": 2, "notes": 3, "tabular": 1}


def _engines() -> tuple[Pseudonymizer, DicomDeidentifier, NoteDeidentifier]:
    pseudonymizer = Pseudonymizer(KEY)
    return pseudonymizer, DicomDeidentifier(pseudonymizer), NoteDeidentifier(pseudonymizer)


def test_prewarm_starts_only_the_pools_enough_files_ask_for_and_does_not_wait() -> None:
    pseudonymizer, dicom, notes = _engines()
    warm_pool.shutdown_all()
    try:
        assert prewarm_pools(pseudonymizer, dicom, notes, 1, {"dicom": 500, "notes": 500}) == []  # one worker
        assert prewarm_pools(pseudonymizer, dicom, notes, 2, {"dicom": 5, "notes": 3}, pool_min_files=8) == []
        assert not pool_is_warm(pseudonymizer, dicom.policy, 2)
        started = time.perf_counter()
        assert prewarm_pools(pseudonymizer, dicom, notes, 2, {"dicom": 8, "notes": 2}, pool_min_files=8) == ["dicom"]
        assert time.perf_counter() - started < 1.0  # the workers load on their own; nothing is awaited here
        assert pool_is_warm(pseudonymizer, dicom.policy, 2)
        assert not notes_pool_is_warm(notes, pseudonymizer, 2)
        assert not pool_is_warm(pseudonymizer, dicom.policy, 3)  # another size is another pool
        pool = warm_pool._POOLS["deid-dicom"][1]
        deadline = time.monotonic() + 60
        while len(pool._executor._processes) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert len(pool._executor._processes) == 2  # type: ignore[attr-defined]  # both workers started
    finally:
        warm_pool.shutdown_all()
    assert not pool_is_warm(pseudonymizer, dicom.policy, 2)


def _deid(root: Path, files: dict[str, bytes], *, prewarm: bool) -> tuple[list[tuple[str, int]], LocalObjectStore]:
    store = LocalObjectStore(root / "data")
    keyring = local_keyring(root / "keys")
    write_drop(store, "src", "d1", files)
    DropIngestor(store, keyring).ingest("src", "d1")
    assert DropValidator(store, keyring).validate("src", "d1", "notes").passed
    pseudonymizer, dicom, notes = _engines()
    if prewarm:
        assert prewarm_pools(pseudonymizer, dicom, notes, 2, {"notes": 1000}) == ["notes"]
    engine = DropDeidentifier(store, keyring, pseudonymizer, dicom, notes, workers=2)  # default pool_min_files
    report = engine.deidentify("src", "d1", "notes")
    assert notes_pool_is_warm(notes, pseudonymizer, 2) is prewarm  # a small drop alone never starts a pool
    if prewarm:  # the drop's batches went to the workers: more work items than the two start-up no-ops
        assert warm_pool._POOLS["deid-notes"][1]._executor._queue_count > 2  # type: ignore[attr-defined]
    return [(i.sha256, i.size) for i in report.items], store


def test_a_small_drop_uses_a_warm_pool_and_gets_the_in_process_bytes(tmp_path: Path) -> None:
    drops, _ = small_corpus()
    files = {f.path: f.data for d in drops for f in d.files if f.modality == "notes"}
    assert 2 <= len(files) < 32  # below POOL_MIN_FILES: in process unless a pool is warm
    warm_pool.shutdown_all()
    try:
        inline, inline_store = _deid(tmp_path / "inline", files, prewarm=False)
        pooled, pooled_store = _deid(tmp_path / "pooled", files, prewarm=True)
    finally:
        warm_pool.shutdown_all()
    assert pooled == inline and len(inline) == len(files)
    record = deid_record_key("notes", "src", "d1")
    assert pooled_store.open_read(record).read() == inline_store.open_read(record).read()
    for sha, _ in pooled:
        key = curated_object_key(sha)
        assert pooled_store.open_read(key).read() == inline_store.open_read(key).read()


def test_a_prewarm_that_cannot_start_changes_nothing(tmp_path: Path) -> None:
    from clinical_pipelines.headless import _prewarm
    from clinical_pipelines.settings import Settings

    store = LocalObjectStore(tmp_path / "data")
    write_drop(store, "src", "d1", {f"a/{i}.dcm": b"x" for i in range(40)})
    # production without a de-identification key: the engines cannot be built, so no pool starts and nothing
    # is raised here; the de-identified step reports the missing key, as it does without a prewarm
    local = Settings.from_env({"CLINICAL_PIPELINES_DEID_WORKERS": "2"}, data_dir=tmp_path / "data",
                              key_dir=tmp_path / "no-keys")  # fmt: skip
    settings = dataclasses.replace(local, env="production")
    warm_pool.shutdown_all()
    try:
        assert _prewarm(settings, store, ["src/d1"]) == []
        assert "deid-dicom" not in warm_pool._POOLS
    finally:
        warm_pool.shutdown_all()
