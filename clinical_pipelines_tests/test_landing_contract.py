"""The drop contract, strictly and cheaply enforced: bad manifests, re-sent drops, odd files, leftovers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.landing.discovery import folder_id
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.quarantine import AGGREGATE_SUFFIX, Quarantine
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.names import load_name_key
from clinical_pipelines_tests.corpus import small_corpus
from clinical_pipelines_tests.test_pipeline import BIN, _env
from clinical_pipelines_tests.test_sensor import tick

SHA = "a" * 64


def _drop_json(files: object, **extra: object) -> bytes:
    return json.dumps({"drop_id": "d1", "source": "src", "files": files, **extra}).encode()


def _put(store: ObjectStore, files: dict[str, bytes], manifest: bytes) -> None:
    for path, data in files.items():
        store.put_bytes(f"landing/src/d1/{path}", data)
    store.put_bytes("landing/src/d1/drop.json", manifest)


BESIDE = {"a.txt": b"a note beside a bad manifest\n", "b.bin": b"\x00\x01\x02"}
ENTRIES = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in BESIDE.items()]


@pytest.mark.parametrize(
    "manifest,detail",
    [
        (
            b'{"drop_id": "d1", "source": "src", "files": [], "files": ' + json.dumps(ENTRIES).encode() + b"}",
            "duplicate key",
        ),
        (
            _drop_json([{"path": "a.txt", "size": 0, "sha256": SHA}]).replace(b'"size": 0', b'"size": ' + b"9" * 5000),
            "digits",
        ),
        (b'{"drop_id": "d1", "source": "src", "files": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper"),
        (
            _drop_json(ENTRIES * 1 + [{"path": f"n{i}", "size": 1, "sha256": SHA} for i in range(9)]),
            "more than the cap",
        ),
        (_drop_json(ENTRIES, size=float("nan")), "NaN"),
    ],
    ids=["duplicate-keys", "5000-digit-number", "100k-nesting", "too-many-entries", "nan"],
)
def test_a_hostile_manifest_quarantines_the_whole_drop_with_one_record(
    store: ObjectStore, keyring: KeyRing, manifest: bytes, detail: str
) -> None:
    _put(store, BESIDE, manifest)
    report = DropIngestor(store, keyring, max_files=10).ingest("src", "d1")
    assert report.manifest_error == "unreadable_drop_manifest" and report.files == []
    objects = [i.key for i in store.list("quarantine/src/d1/")]
    records = [k for k in objects if k.endswith(".json")]
    assert records == [f"quarantine/src/d1/ingest-unreadable_drop_manifest{AGGREGATE_SUFFIX}"]  # one record
    quarantine = Quarantine(store, keyring)
    items = {quarantine.original_path(r): r for r in quarantine.records("quarantine/src/d1/")}
    assert set(items) == {"drop.json", *BESIDE}
    assert detail in items["drop.json"].detail
    for path, data in BESIDE.items():  # nothing lost
        with quarantine.open_original(items[path]) as fh:
            assert fh.read() == data


def test_twenty_thousand_bogus_entries_write_a_handful_of_objects(
    local_store: LocalObjectStore, keyring: KeyRing
) -> None:
    bogus = [{"path": f"missing/{i}.txt", "size": i, "sha256": SHA} for i in range(10_000)]
    bogus += [{"path": f"bad/{i}.txt", "size": -1, "sha256": SHA} for i in range(10_000)]
    _put(local_store, {"real.txt": b"one real note\n"}, _drop_json(bogus))
    report = DropIngestor(local_store, keyring).ingest("src", "d1")
    assert len(report.quarantined) == 20_001  # every item is accounted for ...
    objects = [i.key for i in local_store.list("quarantine/src/d1/")]
    assert len(objects) <= 4, objects  # ... in one record per reason (plus the unlisted file's bytes)
    counts = {
        json.loads(local_store.open_read(k).read())["reason"]: json.loads(local_store.open_read(k).read())["count"]
        for k in objects
        if k.endswith(AGGREGATE_SUFFIX)
    }
    assert counts == {"missing_file": 10_000, "invalid_entry": 10_000, "unlisted_file": 1}


def test_a_text_file_named_dcm_is_a_modality_mismatch(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    dicom = next(f.data for d in drops for f in d.files if f.modality == "dicom")
    write_drop(store, "src", "d1", {"scan.dcm": b"This is a note, not an image.\n", "real.dcm": dicom})
    report = DropIngestor(store, keyring).ingest("src", "d1")
    assert [(f.path, f.modality) for f in report.files] == [("real.dcm", "dicom")]
    assert [r.reason for r in report.quarantined] == ["modality_mismatch"]
    assert report.quarantined[0].bytes_key is not None


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_drop_json_that_is_a_symlink_or_fifo_is_quarantined_not_a_crash(tmp_path: Path, kind: str) -> None:
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store = settings.open_store()
    write_drop(store, "src", "good", {"x.bin": b"\x00good"})
    store.put_bytes("landing/src/odd/a.bin", b"\x00kept bytes")
    target = tmp_path / "data" / "landing" / "src" / "odd" / "drop.json"
    if kind == "symlink":
        (tmp_path / "elsewhere.json").write_bytes(_drop_json([]))
        os.symlink(tmp_path / "elsewhere.json", target)
    else:
        os.mkfifo(target)
    with dg.instance_for_test() as instance:
        assert tick(instance, store.url, None, key_dir=tmp_path / "keys").run_requests  # the tick does not raise
        summary = process_landing(settings, instance)
    assert {d.partition_key: d.success for d in summary.drops} == {"src/good": True, "src/odd": True}
    quarantine = Quarantine(store, settings.keyring())
    items = {quarantine.original_path(r): r for r in quarantine.records("quarantine/src/odd/")}
    assert {r.reason for r in items.values()} == {"unreadable_drop_manifest"}
    assert "not a regular file" in items["drop.json"].detail and items["drop.json"].bytes_key is None
    with quarantine.open_original(items["a.bin"]) as fh:
        assert fh.read() == b"\x00kept bytes"


def test_an_unsafe_folder_holding_a_bad_file_name_and_a_fifo_is_moved_whole(tmp_path: Path) -> None:
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store = settings.open_store()
    folder = tmp_path / "data" / "landing" / "src" / "Smith\\John"
    (folder / "sub").mkdir(parents=True)
    (folder / "a\x01b.txt").write_bytes(b"bytes behind a control character\n")
    (folder / "sub" / "c\\d.txt").write_bytes(b"bytes behind a backslash\n")
    (folder / "drop.json").write_bytes(b"{}")
    os.mkfifo(folder / "pipe")
    with dg.instance_for_test() as instance:
        result = tick(instance, store.url, None, key_dir=tmp_path / "keys")
        (reject,) = [r for r in result.run_requests or [] if r.job_name == "reject_landing_job"]
        job = build_definitions(settings).resolve_job_def("reject_landing_job")
        assert job.execute_in_process(run_config=reject.run_config, instance=instance).success
    assert not folder.exists()  # moved out whole: drop.json last, nothing stranded
    names = load_name_key(store, settings.keyring())
    fid = folder_id(names, "landing/src/Smith\\John/")
    quarantine = Quarantine(store, settings.keyring())
    items = {quarantine.original_path(r): r for r in quarantine.records(f"quarantine/_invalid/{fid}/")}
    assert set(items) == {"a\x01b.txt", "sub/c\\d.txt", "drop.json", "pipe"}
    with quarantine.open_original(items["a\x01b.txt"]) as fh:
        assert fh.read() == b"bytes behind a control character\n"
    assert items["pipe"].bytes_key is None and "not a readable regular file" in items["pipe"].detail
    assert len([i for i in store.list(f"quarantine/_invalid/{fid}/") if i.key.endswith(".json")]) == 1


def test_a_resent_drop_id_is_a_visible_drop_conflict_in_the_sensor_and_in_run(tmp_path: Path) -> None:
    env = _env(tmp_path)
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_drop(store, "src", "d1", {"x.bin": b"\x00first content"})
    cli = [str(BIN / "clinical-pipelines"), "run", "--data-dir", str(tmp_path / "data")]
    first = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    time.sleep(0.01)
    write_drop(store, "src", "d1", {"x.bin": b"\x00second, different content"})
    # The sensor does not skip it: a known drop whose drop.json changed gets a run again.
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("drops", ["src/d1"])
        result = tick(instance, store.url, None, key_dir=tmp_path / "keys")
        assert [
            (r.partition_key, (r.run_key or "").startswith("drop:src/d1:resent:")) for r in result.run_requests or []
        ] == [("src/d1", True)]
    second = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 1
    assert "src/d1 was re-sent with different content" in second.stdout and "drop_conflict" in second.stdout
    assert "Traceback" not in second.stdout
    from clinical_pipelines.storage.keys import local_keyring

    quarantine = Quarantine(store, local_keyring(tmp_path / "keys"))
    conflicts = [r for r in quarantine.records("quarantine/src/d1/") if r.reason == "drop_conflict"]
    assert {quarantine.original_path(r) for r in conflicts} == {"drop.json", "x.bin"}
    with quarantine.open_original(next(r for r in conflicts if quarantine.original_path(r) == "x.bin")) as fh:
        assert fh.read() == b"\x00second, different content"  # the re-sent bytes are kept, visibly


_SLOW_WRITER = """
import sys, time
from clinical_pipelines.storage.local import LocalObjectStore
class Slow:
    sent = False
    def read(self, n=-1):
        if not self.sent:
            self.sent = True
            return b"x" * 1000
        print("writing", flush=True)
        time.sleep(600)
        return b""
LocalObjectStore(sys.argv[1], fsync=False).put_stream("raw/objects/big", Slow())
"""


@pytest.mark.parametrize("age_s", [60, 0])
def test_a_killed_writers_temp_file_is_removed_when_the_store_is_next_opened(tmp_path: Path, age_s: int) -> None:
    """Also at once (age 0): a temp file gets its name only once locked, so an unlocked one is a dead writer's."""
    root = tmp_path / "data"
    writers = [
        subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(root)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline().strip() == "writing"
        temp = sorted((root / ".cp-tmp-work").iterdir())
        assert len(temp) == 2
        os.kill(writers[0].pid, signal.SIGKILL)  # kill -9 mid-write
        writers[0].wait(timeout=30)
        past = time.time() - age_s
        for path in temp:
            os.utime(path, (past, past))  # both old enough to be swept if nobody holds them, or just written
        store = LocalObjectStore(root, fsync=False)  # the next run opens the store
        assert store.swept_temp_files == 1
        assert len(list((root / ".cp-tmp-work").iterdir())) == 1  # the live writer's file is untouched
        assert list(store.list("")) == []  # and nothing partial was ever visible
    finally:
        for w in writers:
            w.kill()
            w.wait(timeout=30)


def test_without_unnamed_files_a_temp_named_before_its_lock_is_swept_only_once_old(tmp_path: Path, monkeypatch) -> None:
    from clinical_pipelines.storage import local

    monkeypatch.setattr(local, "_tmpfile_works", [False])  # a file system without O_TMPFILE
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    store.put_bytes("raw/a", b"written the other way")
    assert read_all(store, "raw/a") == b"written the other way"
    work = tmp_path / "data" / ".cp-tmp-work"
    assert list(work.iterdir()) == []
    # What a writer killed between creating its file and locking it leaves: kept while young (its writer
    # may be about to lock it), swept once old.
    young, old = work / ".cp-tmp-N-young", work / ".cp-tmp-N-old"
    young.write_bytes(b"x")
    old.write_bytes(b"x")
    past = time.time() - 60
    os.utime(old, (past, past))
    assert store.sweep_temp_files() == 1
    assert sorted(p.name for p in work.iterdir()) == [".cp-tmp-N-young"]


def test_without_proc_the_store_names_its_temp_files_before_locking_them(tmp_path: Path, monkeypatch) -> None:
    from clinical_pipelines.storage import local

    monkeypatch.setattr(local, "_tmpfile_works", [True])
    monkeypatch.setattr(local, "_PROC_FD", str(tmp_path / "no-proc-here"))  # a sandbox without /proc
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    store.put_bytes("raw/a", b"written all the same")
    assert read_all(store, "raw/a") == b"written all the same"
    assert local._tmpfile_works == [False]  # found out once, then the other way for the rest of the process
    store.put_bytes("raw/b", b"and again")
    assert read_all(store, "raw/b") == b"and again"
    assert list((tmp_path / "data" / ".cp-tmp-work").iterdir()) == []


def test_an_old_unkeyed_data_folder_is_refused_with_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    old = tmp_path / "data" / "raw" / "objects" / "sha256" / "ab"
    old.mkdir(parents=True)
    (old / ("ab" + "0" * 62)).write_bytes(b"CPENV1\n...")
    proc = subprocess.run(
        [str(BIN / "clinical-pipelines"), "run", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "old unkeyed layout" in lines[0] and "Traceback" not in proc.stderr


def test_a_killed_runs_multipart_upload_is_aborted_on_s3(s3_store: ObjectStore) -> None:
    from clinical_pipelines.storage.s3 import S3ObjectStore

    assert isinstance(s3_store, S3ObjectStore)
    client, bucket = s3_store.client, s3_store.bucket
    client.create_multipart_upload(Bucket=bucket, Key="zones/raw/objects/hmac/ab/left-by-a-killed-run")
    client.create_multipart_upload(Bucket=bucket, Key="elsewhere/not-ours")

    def uploads() -> list[str]:
        return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    # (moto reports every upload as begun in 2010, so the one-day guard for live uploads cannot be shown here)
    assert s3_store.sweep_temp_files(min_age_s=0) == 1
    assert uploads() == ["elsewhere/not-ours"]  # only under the store's own prefix
