"""`kill -9` of `clinical-pipelines run` at chosen and random points, and two runs at once (real processes, signals).

One landing (four small drops: DICOM, notes, tables) is copied, with its keys and names secret,
into two data folders. In the first, two ``run`` commands start at the same moment; the folder they
leave is the reference. In the second, ``run`` is killed with SIGKILL at one point after another
(ingest, validation, de-identification, curate, training shards, a random moment), each time
started again, then left to finish. Its zones must then equal the reference path for path (nothing
twice, nothing half-written, nothing missing), its manifests and curated objects byte for byte, every
manifest must verify, every version claim and catalog row must point at a manifest, and Dagster
must hold exactly one successful run per drop and no unfinished run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.curate.manifest import load_manifest
from clinical_pipelines.curate.verify import verify_manifest
from clinical_pipelines.deid.secret import load_deid_key
from clinical_pipelines.headless import INTERRUPTED_TAG, UNFINISHED
from clinical_pipelines.runlock import LOCK_NAME, run_lock
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.names import load_name_key
from clinical_pipelines_tests.corpus import put_drops, small_corpus

CLI = str(Path(sys.executable).parent / "clinical-pipelines")
ZONES = ("raw", "curated", "training", "quarantine")
# Written once by a run and compared byte for byte with the reference (encrypted objects differ by nonce,
# provenance by its timestamp: those are compared by path only).
BYTE_EXACT = ("curated/manifests/", "curated/versions/", "curated/objects/", "curated/deid/", "training/")
TIMEOUT = 300


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_") and k != "DAGSTER_HOME"}
    env.update({"CLINICAL_PIPELINES_KEY_DIR": str(root / "keys"), "GX_ANALYTICS_ENABLED": "False"})
    return env  # no DAGSTER_HOME: run keeps its instance in DATA_DIR/.dagster


def _start(root: Path, *extra: str, tag: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = root / f"{tag}.out", root / f"{tag}.err"
    proc = subprocess.Popen(
        [CLI, "run", "--data-dir", str(root / "data"), "--json", *extra],
        env=_env(root),
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        start_new_session=True,
    )
    return proc, out, err


def _landing(tmp_path: Path, *names: str, empty: bool = False) -> list[Path]:
    """Copies of one landing with the same master key, de-id key and names secret (so outputs can be compared)."""
    template = tmp_path / "template"
    settings = Settings.from_env({}, data_dir=template / "data", key_dir=template / "keys")
    store = settings.open_store()
    drops, _ = small_corpus()
    put_drops(store, [] if empty else drops)
    load_name_key(store, settings.keyring())
    load_deid_key(settings.key_dir, create=True)
    roots = []
    for name in names:
        shutil.copytree(template, tmp_path / name)
        roots.append(tmp_path / name)
    return roots


def _files(data: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(data)): p
        for zone in ZONES
        if (data / zone).is_dir()
        for p in sorted((data / zone).rglob("*"))
        if p.is_file()
    }


def _partitions() -> set[str]:
    drops, _ = small_corpus()
    return {f"{d.source}/{d.drop_id}" for d in drops}


def _runs(data: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(data / ".dagster")) as instance:
        return list(instance.get_runs())


def _assert_whole(data: Path) -> None:
    """Nothing half-written: every claim, catalog row and manifest consistent and verifying; no temp file."""
    store = LocalObjectStore(data, fsync=False)
    manifests = sorted((data / "curated" / "manifests").glob("*/*.json"))
    assert manifests
    claimed: set[str] = set()
    for folder in sorted((data / "curated" / "versions").iterdir()):
        claims = sorted((int(p.name), p) for p in folder.iterdir())
        numbers = [n for n, _ in claims]
        assert numbers == list(range(1, len(numbers) + 1)), f"gap in the version claims of {folder.name}: {numbers}"
        for n, claim in claims:
            version_id = claim.read_text().strip()
            manifest = load_manifest(store, folder.name, version_id)  # the claim points at a manifest
            assert manifest.number == n
            claimed.add(version_id)
    for path in manifests:
        manifest = load_manifest(store, path.parent.name, path.stem)
        report = verify_manifest(store, manifest)
        assert report.ok, (path, report.problems)
        assert manifest.version_id in claimed, f"manifest {path} was never claimed (a half-finished build)"
    with sqlite3.connect(data / "catalog.sqlite") as db:
        rows = db.execute("select id, manifest_key from versions").fetchall()
    assert {r[0] for r in rows} == claimed, "catalog rows and version claims differ"
    assert all((data / key).is_file() for _, key in rows), "a catalog row without its manifest"
    leftovers = [p for p in data.rglob("*") if p.is_file() and (".cp-tmp" in p.name or ".cp-tmp-work" in p.parts)]
    assert leftovers == [], leftovers


def _assert_each_drop_once(data: Path) -> None:
    drops, _ = small_corpus()
    for drop in drops:
        source, drop_id = drop.source, drop.drop_id
        assert (data / "raw" / "drops" / source / drop_id / "record.json.enc").is_file()
        for modality in ("dicom", "notes", "tabular"):  # a drop's steps run for the modalities it holds
            record = data / "curated" / "deid" / modality / source / f"{drop_id}.json"
            assert record.is_file() == any(f.modality == modality for f in drop.files), (source, drop_id, modality)
    runs = _runs(data)
    assert [r.run_id for r in runs if r.status in UNFINISHED] == [], "a run left unfinished"
    succeeded = [r.tags.get("dagster/partition") for r in runs if r.job_name == "process_drop" and r.is_success]
    assert sorted(succeeded) == sorted(_partitions()), "each drop must have exactly one successful run"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two data folders of one landing: ``concurrent`` (two runs started at once, finished), ``crash`` (untouched)."""
    concurrent, crash = _landing(tmp_path_factory.mktemp("crash"), "concurrent", "crash")
    a = _start(concurrent, tag="a")
    b = _start(concurrent, tag="b")
    for proc, _, _ in (a, b):
        proc.wait(timeout=TIMEOUT)
    return {"concurrent": concurrent, "crash": crash, "a": a, "b": b}  # type: ignore[dict-item]


def test_two_runs_at_once_one_waits_and_nothing_is_done_twice(reference: dict) -> None:
    outcomes = []
    for proc, out, err in (reference["a"], reference["b"]):
        stderr = err.read_text()
        assert proc.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "IntegrityError" not in stderr, stderr[-3000:]
        outcomes.append((json.loads(out.read_text()), stderr))
    waited = [stderr for _, stderr in outcomes if "waiting for it" in stderr]
    assert len(waited) == 1, [s[-500:] for _, s in outcomes]
    # The holder is named by its pid, or as starting when the waiter looked before the holder wrote its pid.
    assert re.search(r"another clinical-pipelines run \((?:pid \d+ on |a process that is starting\))", waited[0])
    assert LOCK_NAME in waited[0]
    processed = sorted(d["partition_key"] for summary, _ in outcomes for d in summary["drops"])
    assert processed == sorted(_partitions()), "each drop processed by exactly one of the two runs"
    second = next(summary for summary, stderr in outcomes if "waiting for it" in stderr)
    assert second["drops"] == [] and not any(c["new_version"] for c in second["curated"])
    data = reference["concurrent"] / "data"
    _assert_whole(data)
    _assert_each_drop_once(data)
    versions = sorted(p.relative_to(data) for p in (data / "curated" / "versions").glob("*/*"))
    assert [int(p.name) for p in versions] == [1] * len(versions) and versions, versions


def test_no_wait_exits_3_with_one_line_while_the_folder_is_held(tmp_path: Path) -> None:
    (root,) = _landing(tmp_path, "held", empty=True)
    with run_lock(root / "data"):  # a real flock held by this process, as a running `run` holds it
        proc, out, err = _start(root, "--no-wait", tag="nowait")
        assert proc.wait(timeout=TIMEOUT) == 3
        lines = err.read_text().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: another clinical-pipelines run (pid "), lines
        assert f"pid {os.getpid()} " in lines[0] and "nothing done" in lines[0]
        assert out.read_text() == ""
        assert not (root / "data" / ".dagster").exists()
        # Waiting (the default): it says so and does nothing until the holder lets go.
        proc, out, err = _start(root, tag="wait")
        deadline = time.monotonic() + 60
        while "waiting for it" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "waiting for it" in err.read_text() and proc.poll() is None
        assert not (root / "data" / ".dagster").exists()  # nothing started while it waits
    assert proc.wait(timeout=TIMEOUT) == 0, err.read_text()[-3000:]
    assert json.loads(out.read_text())["drops"] == [] and (root / "data" / ".dagster").is_dir()


def _kill_when(root: Path, pattern: str | float, tag: str) -> int:
    """Start ``run``; SIGKILL it once a file matching ``pattern`` (under the data folder) exists, or after
    ``pattern`` seconds. Returns its exit status (-9 when killed)."""
    proc, _, err = _start(root, tag=tag)
    data = root / "data"
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() - started < TIMEOUT:
        due = time.monotonic() - started >= pattern if isinstance(pattern, float) else any(data.glob(pattern))
        if due:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    status = proc.wait(timeout=TIMEOUT)
    with contextlib.suppress(ProcessLookupError):  # anything it started goes too (runs execute in its process)
        os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err.read_text(), err.read_text()[-3000:]
    return status


# Kill points, in the order one run reaches them (drops go in sorted order; a random kill comes first).
KILL_POINTS = [
    "raw/drops/hospital-b/drop-0001/landing.json",  # in the ingest step of the third drop, not yet materialized
    "raw/validated/notes/hospital-b/drop-0002.json.enc",  # the fourth drop's raw materialized, validation under way
    "curated/manifests/*/*.json",  # curate: a manifest written, its claim and catalog row maybe not
    "training/*/*/*/shard-*.tar",  # training shards of the first version
]


def test_kill_9_at_any_point_then_run_again_completes_every_drop_once(reference: dict) -> None:
    root: Path = reference["crash"]
    data = root / "data"
    seed = random.randrange(1 << 30)
    delay = random.Random(seed).uniform(0.5, 5.0)  # start-up, ingest or validation of the first drops
    status = _kill_when(root, delay, tag="random")
    print(f"random kill: seed {seed}, after {delay:.2f} s, exit {status}")
    assert status == -signal.SIGKILL
    for i, pattern in enumerate(KILL_POINTS):
        assert not any(data.glob(pattern)), f"the random kill went past {pattern} (seed {seed})"
        status = _kill_when(root, pattern, tag=f"kill{i}")
        assert status == -signal.SIGKILL, f"run ended ({status}) before reaching {pattern}"
    final, out, err = _start(root, tag="final")
    assert final.wait(timeout=TIMEOUT) == 0, err.read_text()[-3000:]
    assert "Traceback" not in err.read_text()
    assert json.loads(out.read_text())["interrupted_runs"] == 1  # the curate run killed while writing shards
    _assert_whole(data)
    _assert_each_drop_once(data)
    interrupted = [r for r in _runs(data) if r.tags.get(INTERRUPTED_TAG) == "true"]
    assert len(interrupted) >= len(KILL_POINTS) and all(r.is_failure for r in interrupted)
    # The same zones as the uninterrupted reference: path for path, written-once content byte for byte.
    ours, theirs = _files(data), _files(reference["concurrent"] / "data")
    assert sorted(ours) == sorted(theirs), (sorted(set(ours) ^ set(theirs)), f"random kill seed {seed}")
    for key, path in ours.items():
        if key.startswith(BYTE_EXACT):
            assert path.read_bytes() == theirs[key].read_bytes(), key
