"""Limits with their own quarantine reasons, bounded memory under a deflate bomb, deflated DICOM end to end,
and a tampered raw object quarantined while the rest of its drop goes on."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import dagster as dg
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.limits import Limits, LimitsError
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.envelope import CHUNK_SIZE
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.validate.dicom import parse_dicom
from clinical_pipelines.validate.engine import DropValidator
from clinical_pipelines.validate.notes import parse_note
from clinical_pipelines.validate.tables import parse_table
from clinical_pipelines.zones import raw_object_key
from clinical_pipelines_tests.corpus import put_drops, small_corpus
from clinical_pipelines_tests.hostile import CLI, deflate_bomb, deflated, run_measured

MiB = 1024 * 1024


def _dicoms(n: int = 5) -> list[bytes]:
    drops, _ = small_corpus()
    return [f.data for d in drops for f in d.files if f.modality == "dicom"][:n]


def _ingest(store: ObjectStore, keyring: KeyRing, drop_id: str, files: dict[str, bytes], limits: Limits | None = None):
    write_drop(store, "src", drop_id, files)
    return DropIngestor(store, keyring, workers=1, limits=limits).ingest("src", drop_id)


def test_limits_come_from_the_environment_and_name_the_variable() -> None:
    limits = Limits.from_env({"CLINICAL_PIPELINES_MAX_DICOM_MB": "2", "CLINICAL_PIPELINES_MAX_TABLE_CELLS": "10"})
    assert limits.max_dicom_bytes == 2 * MiB and limits.max_table_cells == 10
    assert limits.max_note_bytes == Limits().max_note_bytes
    for bad in ("abc", "-1", "0", "nan", "1e400"):
        with pytest.raises(LimitsError, match="CLINICAL_PIPELINES_MAX_PIXEL_MB must be a positive number"):
            Limits.from_env({"CLINICAL_PIPELINES_MAX_PIXEL_MB": bad})
    assert (
        Settings.from_env(
            {"CLINICAL_PIPELINES_NOTES_BATCH": "4"}, data_dir="/tmp/d", key_dir="/tmp/k"
        ).limits.notes_batch
        == 4
    )


def test_too_large_at_ingest_by_declared_size_and_by_sniffed_modality(
    local_store: ObjectStore, keyring: KeyRing
) -> None:
    dicom = _dicoms(1)[0]
    note = b"Patient seen today for follow-up. " * 100
    limits = Limits(max_dicom_bytes=len(dicom) - 1, max_note_bytes=len(note) + 10)
    report = _ingest(local_store, keyring, "big", {"dicom/a.dcm": dicom, "notes/n.txt": note}, limits)
    assert report.quarantined_by_reason() == {"too_large": 1}
    assert [f.path for f in report.files] == ["notes/n.txt"]
    record = next(Quarantine(local_store, keyring).records())
    with Quarantine(local_store, keyring).open_original(record) as original:
        assert original.read() == dicom  # nothing lost


def test_too_large_at_validation_when_the_limit_is_lowered_later(local_store: ObjectStore, keyring: KeyRing) -> None:
    dicoms = _dicoms(5)
    _ingest(local_store, keyring, "d", {f"dicom/{i}.dcm": d for i, d in enumerate(dicoms)})
    big = max(len(d) for d in dicoms)
    limits = Limits(max_dicom_bytes=big - 1)
    report = DropValidator(local_store, keyring, max_item_failure_fraction=1.0, limits=limits).validate(
        "src", "d", "dicom"
    )
    assert report.quarantined_by_reason() == {"too_large": sum(len(d) == big for d in dicoms)}


def _rle(rows: int, columns: int, frames: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_dicoms(1)[0]))
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\x00" * 60 + b"\x00\x00"])  # one tiny fragment
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_geometry_is_bounded_before_any_decode_native_and_rle() -> None:
    assert parse_dicom(_rle(16384, 16384, 9999)).reason == "geometry_too_large"  # 5 TB declared, 4 KB sent
    ds = pydicom.dcmread(io.BytesIO(_dicoms(1)[0]))
    declared = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    limits = Limits(max_pixel_bytes=declared - 1)
    assert parse_dicom(_dicoms(1)[0], limits=limits).reason == "geometry_too_large"
    assert isinstance(parse_dicom(_dicoms(1)[0], limits=Limits(max_pixel_bytes=declared)), dict)


def test_note_length_and_table_cells_have_their_own_reasons() -> None:
    limits = Limits(max_note_chars=100, max_table_cells=20)
    assert parse_note(("word " * 30).encode(), limits=limits).reason == "note_too_long"
    assert parse_note(b"\xff" * 10_000, limits=limits).reason == "note_too_long"  # judged before decoding
    assert isinstance(parse_note(("word " * 19).encode(), limits=limits), dict)
    header = "mrn,admission_date,discharge_date,outcome,age_at_admission\n"
    row = "MRN1,2020-01-01,2020-01-02,discharged,40\n"
    assert parse_table((header + row * 5).encode(), limits=limits).reason == "table_too_large"
    assert not hasattr(parse_table((header + row * 4).encode(), limits=limits), "reason")


def test_deflated_dicom_is_validated_inflated_and_refused_past_the_cap(
    local_store: ObjectStore, keyring: KeyRing
) -> None:
    dicoms = [deflated(d) for d in _dicoms(5)]
    _ingest(local_store, keyring, "dfl", {f"dicom/{i}.dcm": d for i, d in enumerate(dicoms)})
    ok = DropValidator(local_store, keyring).validate("src", "dfl", "dicom")
    assert ok.quarantined == [] and len(ok.passed_items) == 5
    tiny_cap = Limits(max_inflated_bytes=1024)  # below every file's inflated size
    refused = DropValidator(local_store, keyring, max_item_failure_fraction=1.0, limits=tiny_cap).validate(
        "src", "dfl", "dicom"
    )
    assert refused.quarantined_by_reason() == {"inflate_limit": 5}


def _flip_late_byte(store: ObjectStore, sha: str) -> None:
    key = raw_object_key(sha)
    blob = bytearray(read_all(store, key))
    blob[-20] ^= 0x40  # inside the last chunk: past the first 64 KiB the validator parses
    store.put_bytes(key, bytes(blob))


def test_tampered_raw_object_quarantines_that_item_and_the_drop_goes_on(tmp_path: Path) -> None:
    """A flipped byte in a later chunk of one raw object: validation authenticates every chunk, so that item is
    ``tampered_object`` (its stored bytes kept) and the others are de-identified, in a real Dagster run."""
    from clinical_pipelines.definitions import build_definitions
    from clinical_pipelines.defs.deid.assets import deidentified_key
    from clinical_pipelines.defs.ingest.assets import raw_key
    from clinical_pipelines.defs.validate.assets import validated_key

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store, keyring = settings.open_store(), settings.keyring()
    corpus = SynthCorpus(21, n_patients=1, slices_per_series=6, notes_per_patient=1, rows=256, columns=256)
    drop = next(d for d in corpus.iter_drops() if any(f.modality == "dicom" for f in d.files))
    put_drops(store, [drop])
    key = f"{drop.source}/{drop.drop_id}"
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("drops", [key])
        job = defs.resolve_job_def("process_drop")
        # ingest first, alone, so the object can be tampered with between ingest and validation
        result = job.execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False,
            asset_selection=[raw_key(m) for m in ("dicom", "notes", "tabular")],
        )  # fmt: skip
        assert result.success
        record = DropIngestor(store, keyring).raw.read_drop_record(drop.source, drop.drop_id)
        dicoms = record.by_modality("dicom")
        victim = max(dicoms, key=lambda f: f.size)
        assert victim.size > CHUNK_SIZE
        _flip_late_byte(store, victim.sha256)
        selection = [validated_key("dicom"), deidentified_key("dicom")]
        result = job.execute_in_process(
            instance=instance, partition_key=key, raise_on_error=False, asset_selection=selection
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        records = [r for r in Quarantine(store, keyring).records() if r.stage in ("validate", "deid")]
        assert [r.reason for r in records] == ["tampered_object"]
        assert "chunk" in records[0].detail and records[0].sha256_actual  # the stored bytes were kept
        deid = json.loads(read_all(store, f"curated/deid/dicom/{drop.source}/{drop.drop_id}.json"))
        assert len(deid["items"]) == len(dicoms) - 1


@pytest.mark.parametrize("stage", ["deid"])
def test_tampered_after_validation_is_quarantined_by_the_deid_stage(local_store: ObjectStore, keyring: KeyRing,
                                                                    stage: str) -> None:  # fmt: skip
    from clinical_pipelines.deid.dicom import DicomDeidentifier
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer
    from clinical_pipelines.deid.stage import DropDeidentifier

    dicoms = _dicoms(5)
    report = _ingest(local_store, keyring, "t", {f"dicom/{i}.dcm": d for i, d in enumerate(dicoms)})
    assert DropValidator(local_store, keyring).validate("src", "t", "dicom").passed
    _flip_late_byte(local_store, report.files[0].sha256)
    pseudonymizer = Pseudonymizer(b"k" * 32)
    out = DropDeidentifier(local_store, keyring, pseudonymizer, DicomDeidentifier(pseudonymizer)).deidentify(
        "src", "t", "dicom"
    )
    assert out.quarantined_by_reason() == {"tampered_object": 1} and len(out.items) == 4


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "specs").mkdir()
    env |= {"CLINICAL_PIPELINES_KEY_DIR": str(tmp_path / "keys"), "DAGSTER_HOME": str(home),
            "CLINICAL_PIPELINES_SPECS_DIR": str(tmp_path / "specs"), "GX_ANALYTICS_ENABLED": "False"}  # fmt: skip
    return env


def test_deflate_bomb_keeps_memory_bounded_and_deflated_dicom_goes_through(tmp_path: Path) -> None:
    """A 2 MB deflate bomb that inflates to 2 GiB (deflate's best ratio is ~1032:1, so a 4 KB file cannot
    inflate past ~4 MB) beside five ordinary deflated DICOM files, through ``clinical-pipelines run`` in a
    child process: the bomb is ``inflate_limit``, the others reach curated/, and the child's peak RSS
    (``RUSAGE_CHILDREN`` of a parent that only waits for it) stays under 500 MB above the same run without
    the bomb; the validation engine alone on the bomb stays under 500 MB absolute."""
    bomb = deflate_bomb(2 * 1024**3)
    assert len(bomb) < 3 * MiB
    good = {f"dicom/ok{i}.dcm": deflated(d) for i, d in enumerate(_dicoms(5))}
    peaks = {}
    for name, files in (("without", good), ("with", {**good, "dicom/bomb.dcm": bomb})):
        root = tmp_path / name
        root.mkdir()
        env = _cli_env(root)
        write_drop(
            Settings.from_env({}, data_dir=root / "data", key_dir=root / "keys").open_store(), "src", "d1", files
        )
        run = run_measured([CLI, "run", "--data-dir", str(root / "data"), "--json"], env)
        assert run["rc"] == 0, run["stderr"][-2000:]
        summary = json.loads(run["stdout"])
        (drop,) = summary["drops"]
        assert drop["promoted"], drop
        assert drop["validation_quarantined"] == ({"inflate_limit": 1} if name == "with" else {})
        deid = json.loads((root / "data" / "curated/deid/dicom/src/d1.json").read_text())
        assert len(deid["items"]) == 5
        peaks[name] = run["max_rss_kb"] / 1024
    print(f"peak RSS: run without bomb {peaks['without']:.0f} MB, with bomb {peaks['with']:.0f} MB")
    assert peaks["with"] - peaks["without"] < 100, peaks
    # the validation engine alone (no Dagster, no NLP models) on the bomb: absolute bound
    alone = tmp_path / "alone"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = (
        "import sys; from pathlib import Path; from clinical_pipelines.storage.local import LocalObjectStore;"
        "from clinical_pipelines.storage.keys import local_keyring;"
        "from clinical_pipelines.landing.writer import write_drop;"
        "from clinical_pipelines.raw.ingest import DropIngestor;"
        "from clinical_pipelines.validate.engine import DropValidator;"
        "root = Path(sys.argv[1]); store = LocalObjectStore(root / 'data'); kr = local_keyring(root / 'keys');"
        "write_drop(store, 's', 'd', {'dicom/bomb.dcm': Path(sys.argv[2]).read_bytes()});"
        "DropIngestor(store, kr).ingest('s', 'd');"
        "r = DropValidator(store, kr).validate('s', 'd', 'dicom'); print(r.quarantined_by_reason())"
    )
    alone.mkdir()
    (alone / "bomb.dcm").write_bytes(bomb)
    measured = run_measured([sys.executable, "-c", script, str(alone), str(alone / "bomb.dcm")], env)
    assert measured["rc"] == 0, measured["stderr"]
    assert "'inflate_limit': 1" in measured["stdout"]
    print(f"peak RSS: validation engine alone on the bomb {measured['max_rss_kb'] / 1024:.0f} MB")
    assert measured["max_rss_kb"] / 1024 < 500
