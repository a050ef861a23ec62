"""The de-identified stage over warm worker processes: the same outputs, findings and quarantine as in process."""

from __future__ import annotations

import functools
import io
import json
import os
import time
from pathlib import Path

import pydicom
import pytest

from clinical_pipelines.deid import dicom_pool
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

KEY = b"dicom pool test secret, 32+ bytes long!!"
PLANTED_PHONE = "(303) 555-0188"


@functools.cache
def _notes_engine() -> NoteDeidentifier:
    return NoteDeidentifier(Pseudonymizer(KEY))


def _with_manufacturer(data: bytes, value: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Manufacturer = value  # kept by the profile (K): the residual scan must catch a phone in it
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _files() -> dict[str, bytes]:
    drops, _ = small_corpus()
    files = {f.path: f.data for d in drops for f in d.files if f.modality == "dicom"}
    first = sorted(files)[0]
    files[first] = _with_manufacturer(files[first], f"call {PLANTED_PHONE}")
    return files


def _run(tmp_path: str, files: dict[str, bytes], workers: int) -> tuple[DeidStageReport, LocalObjectStore, KeyRing]:
    store = LocalObjectStore(f"{tmp_path}/data")
    keyring = local_keyring(Path(f"{tmp_path}/keys"))
    write_drop(store, "src", "d1", files)
    DropIngestor(store, keyring).ingest("src", "d1")
    assert DropValidator(store, keyring).validate("src", "d1", "dicom").passed
    pseudonymizer = Pseudonymizer(KEY)
    notes = _notes_engine()  # the stage re-analyses DICOM text values with it (the workers with their own)
    engine = DropDeidentifier(
        store, keyring, pseudonymizer, DicomDeidentifier(pseudonymizer), notes, workers=workers, pool_min_files=1
    )
    return engine.deidentify("src", "d1", "dicom"), store, keyring


def test_pooled_stage_writes_the_same_outputs_findings_and_quarantine_as_in_process(tmp_path: Path) -> None:
    files = _files()
    inline, inline_store, _ = _run(str(tmp_path / "inline"), files, workers=1)
    pooled, pooled_store, keyring = _run(str(tmp_path / "pooled"), files, workers=2)
    assert len(inline.items) == len(files) - 1  # one output held back for the planted phone
    assert [(i.sha256, i.size, i.patient_ids, i.attributes) for i in pooled.items] == [
        (i.sha256, i.size, i.patient_ids, i.attributes) for i in inline.items
    ]
    assert pooled.residual_hits == inline.residual_hits and pooled.residual_hits.get("presidio:PHONE_NUMBER") == 1
    assert pooled.identifiers_searched == inline.identifiers_searched > 0
    for store in (inline_store, pooled_store):
        record = json.loads(store.open_read(deid_record_key("dicom", "src", "d1")).read())
        assert record["passed"] is False
    assert inline_store.open_read(deid_record_key("dicom", "src", "d1")).read() == pooled_store.open_read(
        deid_record_key("dicom", "src", "d1")
    ).read()
    for item in pooled.items:  # every curated byte equal to the in-process output
        key = curated_object_key(item.sha256)
        assert pooled_store.open_read(key).read() == inline_store.open_read(key).read()
    quarantined = [q for q in Quarantine(pooled_store, keyring).records("quarantine/src/d1/")]
    assert [q.reason for q in quarantined] == ["residual_phi"]
    original = Quarantine(pooled_store, keyring).open_original(quarantined[0]).read()
    assert original == files[sorted(files)[0]]  # the original bytes kept, not the output


def test_a_file_the_engine_refuses_in_a_worker_is_quarantined_and_the_drop_goes_on(tmp_path: Path) -> None:
    files = _files()
    name = sorted(files)[1]
    ds = pydicom.dcmread(io.BytesIO(files[name]))
    ds.BurnedInAnnotation = "YES"  # refused by the default policy (burned-in text), in the worker
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    files[name] = out.getvalue()
    report, store, keyring = _run(str(tmp_path), files, workers=2)
    reasons = sorted(q.reason for q in report.quarantined)
    assert "residual_phi" in reasons and len(reasons) == 2
    refused = next(q for q in report.quarantined if q.reason != "residual_phi")
    assert Quarantine(store, keyring).open_original(refused).read() == files[name]
    assert len(report.items) == len(files) - 2


def test_the_pool_is_warm_across_drops_and_replaced_when_a_worker_dies() -> None:
    pseudonymizer = Pseudonymizer(KEY)
    policy = DicomDeidentifier(pseudonymizer).policy
    pool = dicom_pool.warm_pool(pseudonymizer, policy, 2)
    assert dicom_pool.warm_pool(Pseudonymizer(KEY), policy, 2) is pool
    data = next(iter(_files().values()))
    (first,) = list(pool.map([data]))
    assert first.out
    pids = list(pool._executor._processes)  # type: ignore[attr-defined]
    os.kill(pids[0], 9)
    deadline = time.monotonic() + 60
    while not pool.broken and time.monotonic() < deadline:  # the executor notices the death on its own thread
        time.sleep(0.05)
    assert pool.broken
    with pytest.raises(Exception):  # noqa: B017 - BrokenProcessPool: the run fails and is retried
        list(pool.map([data] * 20))
    fresh = dicom_pool.warm_pool(pseudonymizer, policy, 2)
    (again,) = list(fresh.map([data]))
    assert fresh is not pool and again.out == first.out


def test_process_landing_with_worker_processes_curates_the_same_bytes_as_without(tmp_path: Path) -> None:
    import dagster as dg

    from clinical_pipelines.deid.stage import POOL_MIN_FILES
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.synth import SynthCorpus

    corpus = SynthCorpus(23, n_patients=1, slices_per_series=POOL_MIN_FILES, notes_per_patient=1, rows=16, columns=16)
    drops = list(corpus.iter_drops())
    assert max(sum(f.path.endswith(".dcm") for f in d.files) for d in drops) >= POOL_MIN_FILES
    curated: dict[int, dict[str, bytes]] = {}
    for workers in (1, 2):
        settings = Settings.from_env(
            {}, data_dir=tmp_path / f"data{workers}", key_dir=tmp_path / "keys", deid_workers=workers
        )
        store = settings.open_store()
        for drop in drops:
            write_drop(store, drop.source, drop.drop_id, {f.path: f.data for f in drop.files})
        with dg.instance_for_test() as instance:
            summary = process_landing(settings, instance)
        assert not summary.failed and all(d.promoted for d in summary.drops)
        curated[workers] = {o.key: store.open_read(o.key).read() for o in store.list("curated/objects/")}
    assert len(curated[1]) >= POOL_MIN_FILES and curated[2] == curated[1]
