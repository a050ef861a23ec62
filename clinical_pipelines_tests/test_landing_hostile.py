"""Hostile landing trees: no name a source writes stops the platform, and no byte is lost.

Property-based (hypothesis) on both backends: folder and file names with bytes that are not
UTF-8, control characters, backslashes, 255-byte names, names equal after Unicode/case folding;
drop.json correct, wrong, strict-JSON-breaking or missing. Each example runs the real landing
sensor (``build_sensor_context`` on a real instance) and then what its runs run (the reject op's
engine, the ingest engine), and checks that every file ends either in the raw zone or in
quarantine with its exact bytes. The example-based tests run the same trees through the real
``clinical-pipelines run`` and the Dagster jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical_pipelines.defs.ingest.sensors import landing_sensor
from clinical_pipelines.defs.resources import KeyRingResource, LandingSettingsResource, ObjectStoreResource
from clinical_pipelines.landing.discovery import folder_id, parse_partition_key
from clinical_pipelines.landing.manifest import is_safe_name
from clinical_pipelines.landing.reject import find_rejection, quarantine_landing_folder
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.storage import ObjectNotFound, ObjectStore
from clinical_pipelines.storage.keys import local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.names import load_name_key
from clinical_pipelines.storage.s3 import S3ObjectStore
from clinical_pipelines_tests.conftest import make_bucket

HOSTILE_TEXT = [
    "Smith\\John",  # a backslash
    "bad name",
    "ctl\x01x",
    "tab\there",
    "new\nline",
    "del\x7f",
    "café",  # NFC ...
    "cafe\u0301",  # ... and NFD: equal after normalisation
    "DROP-1",
    "drop-1",  # equal after case folding
    "SMITH_JOHN_MRN1234567.dcm",
    "é" * 127,  # 254 bytes of UTF-8
    "x" * 255,  # the longest name a Linux file system takes
    "..x",
    "-",
]
SAFE = st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True)


def _ok_component(name: bytes) -> bool:
    return (
        0 < len(name) <= 255
        and b"/" not in name
        and b"\x00" not in name
        and name not in (b".", b"..", b"drop.json")
        and not name.startswith(b".cp-tmp-")
    )


def names(*, s3: bool) -> st.SearchStrategy[bytes]:
    """One folder or file name as bytes (S3 keys are UTF-8, and moto refuses a newline in a key)."""
    text = [t for t in HOSTILE_TEXT if not (s3 and "\n" in t)]
    choices = [SAFE.map(str.encode), st.sampled_from(text).map(str.encode)]
    if not s3:  # a local file system takes any bytes but "/" and NUL
        choices.append(st.binary(min_size=1, max_size=24).filter(_ok_component))
    return st.one_of(*choices).filter(_ok_component)


KINDS = ("good", "bad_sha", "duplicate_keys", "missing", "unlisted", "deep")


@dataclass
class Tree:
    """What a hostile source put into landing: (source, drop) → {relative path → bytes}, and how drop.json was made."""

    drops: dict[tuple[bytes, bytes], dict[bytes, bytes]] = field(default_factory=dict)
    kinds: dict[tuple[bytes, bytes], str] = field(default_factory=dict)
    strays: dict[bytes, bytes] = field(default_factory=dict)  # files outside any drop: key below landing/


@st.composite
def trees(draw: st.DrawFn, *, s3: bool = False) -> Tree:
    tree = Tree()
    for source in draw(st.lists(names(s3=s3), min_size=1, max_size=2, unique=True)):
        for drop in draw(st.lists(names(s3=s3), min_size=1, max_size=2, unique=True)):
            files: dict[bytes, bytes] = {}
            for name in draw(st.lists(names(s3=s3), min_size=0, max_size=3, unique=True)):
                sub = draw(st.sampled_from([b"", b"sub/"]))
                content = draw(
                    st.one_of(
                        st.binary(max_size=48),
                        st.just(b"Seen today, stable.\n"),
                        st.just(b"analyte,value\nhb,12\n"),
                    )
                )
                files[sub + name] = content
            if not s3 and draw(st.booleans()):  # a name pair the same after NFC + case folding, in one drop
                files[b"Caf\xc3\xa9.txt"], files[b"cafe\xcc\x81.TXT"] = b"one\n", b"two\n"
            tree.drops[(source, drop)] = files
            tree.kinds[(source, drop)] = draw(st.sampled_from(KINDS))
        taken = {d for s, d in tree.drops if s == source}
        for name in draw(st.lists(names(s3=s3), max_size=1)):
            if name not in taken:
                tree.strays[source + b"/" + name] = b"a file beside the drops"
    for name in draw(st.lists(names(s3=s3), max_size=1)):
        if name not in {s for s, _ in tree.drops}:
            tree.strays[name] = b"a file directly in landing"
    return tree


def _text(name: bytes) -> str:
    return os.fsdecode(name)  # what a local store lists: surrogate-escaped where not UTF-8


def _manifest(source: bytes, drop: bytes, files: dict[bytes, bytes], kind: str) -> bytes:
    if kind == "duplicate_keys":
        return b'{"files": [], "files": [], "drop_id": "x", "source": "y"}'
    if kind == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    entries = [
        {"path": _text(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in sorted(files.items())
    ]
    if kind == "bad_sha" and entries:
        entries[0]["sha256"] = "0" * 64
    if kind == "unlisted" and entries:
        entries.pop()
    doc = {"drop_id": _text(drop), "source": _text(source), "files": entries}
    return json.dumps(doc).encode()  # ensure_ascii: non-UTF-8 names travel as "\udcxx" escapes


def write_local(root: Path, tree: Tree) -> None:
    for (source, drop), files in tree.drops.items():
        folder = os.fsencode(root / "landing") + b"/" + source + b"/" + drop
        os.makedirs(folder, exist_ok=True)
        for path, data in files.items():
            os.makedirs(os.path.dirname(folder + b"/" + path), exist_ok=True)
            with open(folder + b"/" + path, "wb") as fh:
                fh.write(data)
        if tree.kinds[(source, drop)] != "missing":
            with open(folder + b"/drop.json", "wb") as fh:
                fh.write(_manifest(source, drop, files, tree.kinds[(source, drop)]))
    for key, data in tree.strays.items():
        with open(os.fsencode(root / "landing") + b"/" + key, "wb") as fh:
            fh.write(data)


def write_s3(store: S3ObjectStore, tree: Tree) -> None:
    """Straight through boto3: the store itself refuses to write such names, a source does not."""
    for (source, drop), files in tree.drops.items():
        prefix = f"{store.prefix}/landing/{source.decode()}/{drop.decode()}/"
        for path, data in files.items():
            store.client.put_object(Bucket=store.bucket, Key=prefix + path.decode(), Body=data)
        if tree.kinds[(source, drop)] != "missing":
            body = _manifest(source, drop, files, tree.kinds[(source, drop)])
            store.client.put_object(Bucket=store.bucket, Key=prefix + "drop.json", Body=body)
    for key, data in tree.strays.items():
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/landing/{key.decode()}", Body=data)


def process(store: ObjectStore, key_dir: Path, endpoint: str | None = None) -> None:
    """Two sensor ticks on a real instance, then what each requested run does (the jobs' own engines)."""
    resources = {
        "object_store": ObjectStoreResource(url=store.url, endpoint_url=endpoint),
        "landing": LandingSettingsResource(stale_after_hours=1e-9),  # incomplete drops go stale at once
        "keyring": KeyRingResource(key_dir=str(key_dir)),
    }
    keyring = local_keyring(key_dir)
    names = load_name_key(store, keyring)
    with dg.instance_for_test() as instance:
        cursor = None
        for _ in range(2):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = landing_sensor(context)
            assert isinstance(result, dg.SensorResult)
            cursor = result.cursor
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
            for run in result.run_requests or []:
                if run.job_name == "reject_landing_job":
                    config = run.run_config["ops"]["reject_landing_folders"]["config"]
                    for folder in config["folder_ids"]:
                        rejection = find_rejection(store, names, folder, config["reason"])
                        if rejection is not None:
                            quarantine_landing_folder(store, keyring, rejection, names)
                else:
                    DropIngestor(store, keyring, workers=2).ingest(*parse_partition_key(run.partition_key or ""))


def assert_every_byte_kept(store: ObjectStore, key_dir: Path, tree: Tree) -> None:
    keyring = local_keyring(key_dir)
    names = load_name_key(store, keyring)
    raw, quarantine = RawZone(store, keyring, names), Quarantine(store, keyring, names)
    kept: dict[tuple[str, str, str], list[bytes]] = {}
    for record in quarantine.records():
        path = quarantine.original_path(record)
        if record.bytes_key is not None and path is not None:
            with quarantine.open_original(record) as fh:
                kept.setdefault((record.source, record.drop_id, path), []).append(fh.read())
    for (source_b, drop_b), files in tree.drops.items():
        source, drop = _text(source_b), _text(drop_b)
        prefix = f"landing/{source}/{drop}/"
        if is_safe_name(source) and is_safe_name(drop) and tree.kinds[(source_b, drop_b)] != "missing":
            try:
                ingested = {f.path: f.sha256 for f in raw.read_drop_record(source, drop).files}
            except ObjectNotFound:
                ingested = {}
            owner = (source, drop)
        else:
            ingested, owner = {}, ("_invalid", folder_id(names, prefix))  # unsafe name, or never completed
        for path_b, data in files.items():
            path = _text(path_b)
            if path in ingested:
                assert ingested[path] == hashlib.sha256(data).hexdigest()
                assert raw.read_object(ingested[path]) == data
            else:
                assert data in kept.get((*owner, path), []), (tree.kinds[(source_b, drop_b)], owner == (source, drop))
    for key_b, data in tree.strays.items():
        key = "landing/" + _text(key_b)
        assert data in kept.get(("_invalid", folder_id(names, key), key.rsplit("/", 1)[1]), []), "stray file lost"


def _run_local(tree: Tree) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, key_dir = Path(tmp) / "data", Path(tmp) / "keys"
        root.mkdir()
        write_local(root, tree)
        store = LocalObjectStore(root, fsync=False)
        process(store, key_dir)
        assert_every_byte_kept(store, key_dir, tree)
        # Unsafe folders and stray files were moved out whole; nothing of theirs is stranded in landing.
        left = [i.key for i in store.list("landing/")]
        assert all(k.count("/") >= 3 and is_safe_name(k.split("/")[1]) and is_safe_name(k.split("/")[2]) for k in left)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees())
def test_hostile_local_landing_never_stops_the_tick_and_keeps_every_byte(tree: Tree) -> None:
    _run_local(tree)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(tree=trees(s3=True))
def test_hostile_s3_landing_never_stops_the_tick_and_keeps_every_byte(s3_endpoint: str, tree: Tree) -> None:
    store = S3ObjectStore(make_bucket(s3_endpoint), "zones", endpoint_url=s3_endpoint, region_name="us-east-1")
    key_dir = Path(tempfile.mkdtemp())
    try:
        write_s3(store, tree)
        process(store, key_dir, s3_endpoint)
        assert_every_byte_kept(store, key_dir, tree)
    finally:
        shutil.rmtree(key_dir, ignore_errors=True)


def test_normalisation_pairs_really_differ() -> None:
    # The hostile texts above that should collide after folding do, and are distinct strings.
    assert unicodedata.normalize("NFC", "cafe\u0301") == "café" != "cafe\u0301"
    assert "DROP-1".casefold() == "drop-1".casefold()


HOSTILE_TREE = Tree(
    drops={
        (b"hospital-a", b"good"): {b"notes.bin": b"\x00\x01 binary", b"labs.csv": b"analyte,value\nhb,12\n"},
        (b"hospital-a", b"Smith\\John"): {b"a.bin": b"\x00behind a backslash"},
        (b"hospital-a", b"ctl\x01drop"): {b"b\nc.bin": b"\x00behind control characters"},
        (b"hospital-a", b"\xff\xfe-not-utf8"): {b"\xc3(.bin": b"\x00behind bytes that are not UTF-8"},
        (b"hospital-a", b"x" * 255): {b"y" * 255: b"\x00a 255-byte name in a 255-byte folder"},
        (b"hospital-a", b"caf\xc3\xa9"): {b"n.bin": b"\x00NFC"},
        (b"hospital-a", b"cafe\xcc\x81"): {b"n.bin": b"\x00NFD"},
        (b"hospital-a", b"dups"): {b"Caf\xc3\xa9.txt": b"one\n", b"cafe\xcc\x81.TXT": b"two\n", b"\x07.bin": b"\x00"},
        (b"hospital-a", b"dupkeys"): {b"k.bin": b"\x00kept"},
        (b"hospital-a", b"deep"): {b"k.bin": b"\x00kept too"},
        (b"hospital-a", b"wrong"): {b"w.bin": b"\x00wrong sha"},
        (b"bad source\\x", b"d1"): {b"s.bin": b"\x00in an unsafe source"},
    },
    kinds={},
    strays={b"hospital-a/stray.bin": b"\x00outside any drop"},
)
for _key in HOSTILE_TREE.drops:
    HOSTILE_TREE.kinds[_key] = {b"dupkeys": "duplicate_keys", b"deep": "deep", b"wrong": "bad_sha"}.get(_key[1], "good")


def test_clinical_pipelines_run_goes_through_a_hostile_landing(tmp_path: Path) -> None:
    """The real command over names no contract allows: exit 0, every safe drop processed, every byte kept."""
    import subprocess

    from clinical_pipelines_tests.test_pipeline import BIN, _env

    env = _env(tmp_path) | {"CLINICAL_PIPELINES_STALE_AFTER_HOURS": "0"}
    root = tmp_path / "data"
    write_local(root, HOSTILE_TREE)
    os.mkfifo(root / "landing" / "hospital-a" / "Smith\\John" / "pipe")  # a FIFO in an unsafe folder
    proc = subprocess.run(
        [str(BIN / "clinical-pipelines"), "run", "--data-dir", str(root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert sorted(d["partition_key"] for d in summary["drops"]) == [
        "hospital-a/deep",
        "hospital-a/dupkeys",
        "hospital-a/dups",
        "hospital-a/good",
        "hospital-a/wrong",
    ]
    # (a quality gate may stop a drop of odd notes or tables: that is the gate working, not a crash)
    assert [
        (d["partition_key"], d["error"]) for d in summary["drops"] if not (d["success"] or d["stopped_by_checks"])
    ] == []
    assert summary["rejected_folders"] == 7
    reasons = {d["partition_key"]: d["quarantined_by_reason"] for d in summary["drops"]}
    assert set(reasons["hospital-a/dups"]) == {"name_collision", "unsafe_name"}  # NFD twin; a BEL in a name
    assert set(reasons["hospital-a/deep"]) == set(reasons["hospital-a/dupkeys"]) == {"unreadable_drop_manifest"}
    store = LocalObjectStore(root, fsync=False)
    kept = {k: v for k, v in HOSTILE_TREE.drops.items()}
    assert_every_byte_kept(store, tmp_path / "keys", Tree(kept, HOSTILE_TREE.kinds))
    assert "Smith" not in proc.stdout + proc.stderr and "ctl" not in proc.stdout + proc.stderr  # no unsafe name shown


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees())
def test_run_over_hostile_local_landing_never_raises_and_keeps_every_byte(tree: Tree) -> None:
    """``run``'s own engine (``process_landing``: the reject job, then every drop's process_drop job, then
    curate), in process on a real instance: no drop's name or manifest makes it raise."""
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings

    for files in tree.drops.values():  # keep the example cheap: no note or table reaches de-identification
        for path in files:
            files[path] = b"\x00" + files[path]
    with tempfile.TemporaryDirectory() as tmp:
        root, key_dir = Path(tmp) / "data", Path(tmp) / "keys"
        root.mkdir()
        write_local(root, tree)
        settings = Settings.from_env({}, data_dir=root, key_dir=key_dir)
        with dg.instance_for_test() as instance:
            summary = process_landing(settings, instance)
        assert summary.failed == [] and (summary.curated is None or summary.curated.success)
        complete = [k for k in tree.drops if tree.kinds[k] != "missing"]
        safe = [k for k in complete if is_safe_name(_text(k[0])) and is_safe_name(_text(k[1]))]
        assert len(summary.drops) == len(safe) and summary.rejected_folders == len(complete) - len(safe)
        # run does not judge staleness (it keeps no first-seen times): incomplete drops and stray files wait
        waiting = Tree(
            {k: v for k, v in tree.drops.items() if k in complete},
            {k: v for k, v in tree.kinds.items() if k in complete},
        )
        assert_every_byte_kept(LocalObjectStore(root, fsync=False), key_dir, waiting)
