"""The standalone de-identification CLI: real subprocesses, planted identifiers grepped in every output byte."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_pipelines.synth import SynthCorpus

CLI = str(Path(sys.executable).parent / "clinical-pipelines")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    environment["CLINICAL_PIPELINES_DEID_KEY"] = base64.b64encode(b"k" * 32).decode()
    environment["CLINICAL_PIPELINES_KEY_DIR"] = str(tmp_path / "keys")
    return environment


def corpus_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    corpus = SynthCorpus(17, n_patients=3, slices_per_series=4, rows=32, columns=32)
    folder = tmp_path / "in"
    for drop in corpus.iter_drops():
        for f in drop.files:
            path = folder / drop.source / drop.drop_id / f.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)
    return folder, [c.value for c in corpus.canaries() if len(c.value) >= 6]


@pytest.mark.parametrize("workers", [1, 2])
def test_deid_dicom_folder(tmp_path: Path, env: dict[str, str], workers: int) -> None:
    folder, canaries = corpus_folder(tmp_path)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".dcm":
            path.unlink()  # DICOM only for this command
    dicoms = sorted(p.relative_to(folder) for p in folder.rglob("*.dcm"))
    out = tmp_path / "out"
    proc = subprocess.run([CLI, "deid", "dicom", str(folder), str(out), "--workers", str(workers)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{len(dicoms)} file(s), {len(dicoms)} written" in proc.stdout
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert written == dicoms
    blob = b"".join((out / p).read_bytes() for p in written)
    assert [v for v in canaries if v.encode() in blob] == []
    assert not any(v in proc.stdout + proc.stderr for v in canaries)


def test_deid_dicom_refuses_and_counts_bad_files(tmp_path: Path, env: dict[str, str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "junk.dcm").write_bytes(b"not dicom")
    proc = subprocess.run([CLI, "deid", "dicom", str(folder), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "malformed_dicom: 1" in proc.stdout


def test_deid_table(tmp_path: Path, env: dict[str, str]) -> None:
    folder, canaries = corpus_folder(tmp_path)
    labs = next(folder.rglob("labs.csv"))
    out = tmp_path / "labs.deid.csv"
    proc = subprocess.run([CLI, "deid", "table", str(labs), str(out)], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "k-anonymity" in proc.stdout
    text = out.read_text()
    assert text.splitlines()[0].startswith("patient_id,")
    long_values = [v for v in canaries if len(v) >= 8 and not v.isdigit() and "-" not in v[:5]]
    assert [v for v in long_values if v in text] == []


def test_deid_notes(tmp_path: Path, env: dict[str, str]) -> None:
    folder, canaries = corpus_folder(tmp_path)
    notes = tmp_path / "notes"
    for path in folder.rglob("*.txt"):
        target = notes / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (notes / "latin1.txt").write_bytes("Röntgen".encode("latin-1"))
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"notes-out-{workers}"
        proc = subprocess.run([CLI, "deid", "notes", str(notes), str(out), "--workers", str(workers),
                               "--batch-size", "3"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "1 refused" in proc.stdout and "PERSON" in proc.stdout and f"{workers} worker(s)" in proc.stdout
        outputs[workers] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(outputs[1]) >= 4 and outputs[1] == outputs[2]  # same notes, same bytes, however many processes
    text = b"".join(outputs[2].values()).decode()
    assert "[NAME]" in text
    names = [v for v in canaries if " " in v and v.replace(" ", "").isalpha()]  # "Given Family" names
    assert names and [v for v in names if v in text] == []


def test_deid_path_never_imports_dagster(tmp_path: Path, env: dict[str, str]) -> None:
    """The standalone engine starts fast: running `deid dicom` imports no Dagster module."""
    folder = tmp_path / "in"
    folder.mkdir()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "clinical_pipelines.cli", "deid", "dicom", str(folder),
         str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "pydicom" in imported and not [m for m in imported if m.split(".")[0] in ("dagster", "great_expectations")]
