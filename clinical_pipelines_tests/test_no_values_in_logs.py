"""No value from a file reaches a log: pydicom's warnings about invalid values, a hostile transfer syntax UID
and engine errors leave nothing in the compute logs, the event log (SQLite under DAGSTER_HOME), the process's
stderr/stdout, or the quarantine records (a real ``clinical-pipelines run`` in a subprocess)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path

import pydicom

from clinical_pipelines import pydicom_quiet
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import read_all
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines_tests.corpus import files_under, find_planted
from clinical_pipelines_tests.hostile import CLI, PLANTED_INVALID, with_invalid_values

HOSTILE_SYNTAX = "1.2.840.10008.1.2.QXSYNTAXJOHNSMITH" + "9" * 5000


def _hostile_syntax(data: bytes) -> bytes:
    """The instance with a 5 KB attacker-chosen Transfer Syntax UID in its file meta (body: explicit VR LE)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    ds = pydicom.dcmread(io.BytesIO(data))
    meta = ds.file_meta
    meta.TransferSyntaxUID = HOSTILE_SYNTAX
    out = DicomBytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    del ds.file_meta
    write_dataset(out, ds, (False, True))
    return out.getvalue()


def test_reduce_message_keeps_tag_and_vr_only() -> None:
    reduced = pydicom_quiet.reduce_message("Invalid value for VR IS: 'JOHN SMITH' in (0020, 0013)")
    assert "JOHN" not in reduced and "(0020,0013)" in reduced and "IS" in reduced


def test_pydicom_logger_records_are_reduced(caplog) -> None:
    pydicom_quiet.configure()
    with caplog.at_level(logging.WARNING, logger="pydicom"):
        logging.getLogger("pydicom").warning("Invalid value for VR PN: 'QXPLANTEDNAME'")
    assert caplog.records and all("QXPLANTEDNAME" not in r.getMessage() for r in caplog.records)


def test_planted_values_never_reach_logs_event_log_or_stderr(tmp_path: Path) -> None:
    corpus = SynthCorpus(5, n_patients=2, slices_per_series=5, notes_per_patient=1, rows=32, columns=32)
    drop = next(d for d in corpus.iter_drops() if sum(f.modality == "dicom" for f in d.files) >= 5)
    files = {f.path: f.data for f in drop.files}
    dicoms = sorted(p for p in files if p.endswith(".dcm"))
    for path in dicoms[:2]:  # values pydicom warns about when it reads them
        files[path] = with_invalid_values(files[path])
    files["dicom/hostile-syntax.dcm"] = _hostile_syntax(files[dicoms[2]])
    data_dir = tmp_path / "data"
    store = Settings.from_env({}, data_dir=data_dir, key_dir=tmp_path / "keys").open_store()
    write_drop(store, drop.source, drop.drop_id, files)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "specs").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    env |= {"CLINICAL_PIPELINES_KEY_DIR": str(tmp_path / "keys"), "DAGSTER_HOME": str(home),
            "CLINICAL_PIPELINES_SPECS_DIR": str(tmp_path / "specs"), "GX_ANALYTICS_ENABLED": "False",
            "CLINICAL_PIPELINES_MAX_ITEM_FAILURE_FRACTION": "1"}  # fmt: skip
    proc = subprocess.run(
        [CLI, "run", "--data-dir", str(data_dir), "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["drops"][0]["validation_quarantined"].get("unsupported_transfer_syntax") == 1, summary
    planted = [*PLANTED_INVALID.values(), "QXSYNTAXJOHNSMITH", "9" * 200]
    # the run's own output, the compute logs and the SQLite event log under DAGSTER_HOME
    assert find_planted([("stdout", proc.stdout.encode()), ("stderr", proc.stderr.encode())], planted) == []
    logs = list(files_under(home))
    assert any(name.endswith((".err", ".out", ".complete")) or "compute_logs" in name for name, _ in logs)
    assert any(name.endswith(".db") for name, _ in logs)
    assert find_planted(logs, planted) == []
    # records in the clear (quarantine reasons, de-identified records): bounded, sanitised, value-free
    clear = [(i.key, read_all(store, i.key)) for i in store.list("quarantine/") if i.key.endswith(".json")]
    assert clear and find_planted(clear, planted) == []
    details = [json.loads(blob)["detail"] for _, blob in clear]
    assert all(len(d) < 400 for d in details), details
    assert any("an unknown UID (5035 characters)" in d for d in details), details
