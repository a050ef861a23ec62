"""The standalone de-identification CLI: real subprocesses, planted identifiers grepped in every output byte."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pydicom.filewriter
import pytest
from pydicom.data import get_testdata_file

from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.validate import items as validate_items
from clinical_pipelines_tests.hostile import deflate_bomb

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


def dicom_only(folder: Path) -> list[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".dcm":
            path.unlink()  # DICOM only for this command
    return sorted(folder.rglob("*.dcm"))


def run_cli(*args: str, env: dict[str, str], timeout: int = 300, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.mark.parametrize("workers", [1, 2])
def test_deid_dicom_folder(tmp_path: Path, env: dict[str, str], workers: int) -> None:
    folder, canaries = corpus_folder(tmp_path)
    dicoms = dicom_only(folder)
    out, mapping = tmp_path / "out", tmp_path / "mapping.enc"
    proc = run_cli("deid", "dicom", str(folder), str(out), "--workers", str(workers), "--mapping", str(mapping),
                   env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{len(dicoms)} file(s), {len(dicoms)} written, 0 refused (none), 0 with residual findings" in proc.stdout
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(written) == len(dicoms) and all(re.fullmatch(r"2\.25\.\d+\.dcm", name) for name in written)
    blob = b"".join((out / p).read_bytes() for p in written)
    assert [v for v in canaries if v.encode() in blob] == []
    input_names = {part for p in dicoms for part in p.relative_to(folder).parts}
    assert not any(name in proc.stdout + proc.stderr for name in input_names)
    # The mapping is encrypted (no input name in its bytes) and decrypts, with the master key, to input -> output.
    assert not any(name.encode() in mapping.read_bytes() for name in input_names)
    shown = run_cli("deid", "mapping", str(mapping), env=env)
    assert shown.returncode == 0, shown.stderr
    pairs = json.loads(shown.stdout)
    assert sorted(pairs) == sorted(p.relative_to(folder).as_posix() for p in dicoms)
    assert sorted(pairs.values()) == written
    for source, name in pairs.items():  # each output is its input's de-identified form, named by its new UID
        new_uid = pydicom.dcmread(out / name).SOPInstanceUID
        assert name == f"{new_uid}.dcm" and new_uid != pydicom.dcmread(folder / source).SOPInstanceUID


def test_deid_dicom_validates_like_the_pipeline_and_goes_on(tmp_path: Path, env: dict[str, str]) -> None:
    """Truncated, deflate-bomb, non-DICOM and off-suite files are refused with the pipeline's reasons; the rest
    is written."""
    folder, _ = corpus_folder(tmp_path)
    dicoms = dicom_only(folder)
    good = dicoms[0].read_bytes()
    (folder / "cut.dcm").write_bytes(good[: len(good) * 2 // 3])  # pixel data cut short
    (folder / "bomb.dcm").write_bytes(deflate_bomb(80 * 1024 * 1024))
    (folder / "junk.dcm").write_bytes(b"not dicom")
    (folder / "odd.dcm").write_bytes(_with(dicoms[1], Modality="ZZ"))  # a modality the pipeline's suite refuses
    (folder / "twin.dcm").write_bytes(_with(dicoms[0], Manufacturer="Other Vendor"))  # same SOP Instance UID
    assert validate_items.check_dicom((folder / "bomb.dcm").read_bytes()).reason == "inflate_limit"
    out = tmp_path / "out"
    proc = run_cli("deid", "dicom", str(folder), str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    total = len(dicoms) + 5
    assert (f"{total} file(s), {len(dicoms)} written, 5 refused (duplicate_output_name: 1, inflate_limit: 1, "
            "not_dicom: 1, truncated_dicom: 1, validation_failed: 1)") in proc.stdout  # fmt: skip
    assert len(list(out.iterdir())) == len(dicoms)
    # A re-run into the same folder finds its own outputs there (same bytes): nothing refused, nothing changed.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run_cli("deid", "dicom", str(folder), str(out), env=env)
    assert again.returncode == 0 and f"{len(dicoms)} written, 5 refused" in again.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _with(path: Path, **values: str) -> bytes:
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_deid_dicom_inflates_a_normal_deflated_file(tmp_path: Path, env: dict[str, str]) -> None:
    """A deflated file by another author (pydicom's test data) is validated on its inflated form, not refused."""
    source = Path(get_testdata_file("image_dfl.dcm"))
    header = validate_items.parse_dicom(source.read_bytes())
    assert isinstance(header, dict) and header["rows"] == 512
    cut = source.read_bytes()[:-100]
    assert validate_items.parse_dicom(cut).reason == "truncated_dicom"


def test_deid_dicom_residual_finding_holds_the_output_back(tmp_path: Path, env: dict[str, str]) -> None:
    """A patient's name left in a kept attribute is found; that output is not written and the exit status is 1."""
    folder, _ = corpus_folder(tmp_path)
    dicoms = dicom_only(folder)
    ds = pydicom.dcmread(dicoms[0])
    family = str(ds.PatientName).split("^")[0]
    dicoms[0].write_bytes(_with(dicoms[0], Manufacturer=f"{family} Imaging"))
    out = tmp_path / "out"
    proc = run_cli("deid", "dicom", str(folder), str(out), env=env)
    assert proc.returncode == 1, proc.stderr
    held = re.search(r"residual PHI in (2\.25\.\d+\.dcm) \(not written\): PatientName x1", proc.stdout)
    assert held and not (out / held.group(1)).exists()
    assert f"{len(dicoms) - 1} written" in proc.stdout and family not in proc.stdout + proc.stderr
    skipped = run_cli("deid", "dicom", str(folder), str(tmp_path / "out2"), "--no-residual-scan", env=env)
    assert skipped.returncode == 0 and "residual scan skipped" in skipped.stdout


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("not base64!", "CLINICAL_PIPELINES_DEID_KEY is not valid base64"),
        (base64.b64encode(b"short").decode(), "CLINICAL_PIPELINES_DEID_KEY must decode to at least 32 bytes"),
        ("folder", "cannot read or create the key file"),  # deid.secret is a folder: unreadable
        ("readable", "is readable by others; chmod 600 it"),
    ],
)
def test_deid_config_errors_are_one_line(tmp_path: Path, env: dict[str, str], key: str, expected: str) -> None:
    folder, _ = corpus_folder(tmp_path)
    if key in ("folder", "readable"):
        del env["CLINICAL_PIPELINES_DEID_KEY"]
        secret = tmp_path / "keys" / "deid.secret"
        secret.parent.mkdir(mode=0o700)
        if key == "folder":
            secret.mkdir(mode=0o700)
        else:
            secret.write_text(base64.b64encode(b"k" * 32).decode())
            secret.chmod(0o644)
    else:
        env["CLINICAL_PIPELINES_DEID_KEY"] = key
    for command in ("dicom", "notes"):
        proc = run_cli("deid", command, str(folder), str(tmp_path / f"out-{command}"), env=env, timeout=120)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
        assert "CLINICAL_PIPELINES_DEID_KEY" in proc.stderr  # the fix names the variable
    table = next(folder.rglob("labs.csv"))
    proc = run_cli("deid", "table", str(table), str(tmp_path / "t.csv"), env=env, timeout=120)
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr


def _limit_file_size() -> None:
    """In the child: files may not grow past 200 bytes (writes fail with EFBIG, as on a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


@pytest.mark.parametrize(("command", "workers"), [("dicom", 1), ("dicom", 2), ("notes", 1)])
def test_deid_output_errors_are_one_line_and_leave_nothing(
    tmp_path: Path, env: dict[str, str], command: str, workers: int
) -> None:
    folder, _ = corpus_folder(tmp_path)
    if command == "dicom":
        dicom_only(folder)
    else:
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".txt":
                path.unlink()
    names = {part for p in folder.rglob("*") for part in p.relative_to(folder).parts}
    # A full disk: every output write fails part way.
    out = tmp_path / "full"
    proc = run_cli("deid", command, str(folder), str(out), "--workers", str(workers), env=env,
                   preexec_fn=_limit_file_size)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and f"cannot write to the output folder {out}" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(n in proc.stderr + proc.stdout for n in names)
    assert [p.name for p in out.iterdir()] == []  # no temporary file left
    # An output folder that cannot be made (its parent is a file).
    (tmp_path / "file").write_text("x")
    proc = run_cli("deid", command, str(folder), str(tmp_path / "file" / "out"), env=env)
    assert proc.returncode == 2 and "cannot write to the output folder" in proc.stderr
    assert "Traceback" not in proc.stderr


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
    """Notes the pipeline refuses are refused with its reasons, the rest written under content hashes, the same
    bytes however many processes."""
    folder, canaries = corpus_folder(tmp_path)
    notes = tmp_path / "notes"
    for path in folder.rglob("*.txt"):
        target = notes / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    good = len(list(notes.rglob("*.txt")))
    (notes / "latin1.txt").write_bytes("Röntgen des Thorax ohne Befund, Patient beschwerdefrei.".encode("latin-1"))
    (notes / "empty.txt").write_bytes(b"  \n")
    (notes / "nul.txt").write_bytes(b"Seen today in clinic.\x00\x00 Follow up in two weeks.")
    (notes / "huge.txt").write_bytes(b"Patient stable. " * 20_000)  # 320,000 characters: over the note limit
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"notes-out-{workers}"
        proc = run_cli("deid", "notes", str(notes), str(out), "--workers", str(workers), "--batch-size", "3", env=env)
        assert proc.returncode == 0, proc.stderr
        assert (f"{good + 4} note(s), {good} written, 4 refused (binary_note: 1, empty_note: 1, not_utf8: 1, "
                "note_too_long: 1), 0 with residual findings") in proc.stdout  # fmt: skip
        assert "PERSON" in proc.stdout and f"{workers} worker(s)" in proc.stdout
        outputs[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(outputs[1]) == good and outputs[1] == outputs[2]
    assert all(name == hashlib.sha256(data).hexdigest() + ".txt" for name, data in outputs[1].items())
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


def test_deid_dicom_moves_times_of_day_unless_asked_to_keep_them(tmp_path: Path, env: dict[str, str]) -> None:
    folder, _ = corpus_folder(tmp_path)
    inputs = dicom_only(folder)
    original_times = {str(pydicom.dcmread(p).StudyTime) for p in inputs}
    assert original_times - {""}
    for flag, expect_kept in (([], False), (["--keep-time-of-day"], True)):
        out = tmp_path / f"out{len(flag)}"
        done = run_cli("deid", "dicom", str(folder), str(out), *flag, env=env)
        assert done.returncode == 0, done.stderr
        assert ("times of day kept (a re-identification risk)" in done.stdout) == expect_kept
        times = {str(pydicom.dcmread(p).StudyTime) for p in out.glob("*.dcm")}
        assert times and (times <= original_times) == expect_kept
        assert expect_kept or not times & original_times  # moved: no original clock time survives
