"""The landing sensor: complete drops → partitions + runs, idempotent re-ticks, scale, unsafe and stale folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.defs.ingest.sensors import landing_sensor
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import KeyRingResource, LandingSettingsResource, ObjectStoreResource
from clinical_pipelines.landing.discovery import discover_drops
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.storage import ObjectInfo, ObjectStore
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.names import NameKey

_KEY_DIRS: dict[str, str] = {}  # one master-key folder per store across a test's ticks


def tick(
    instance: dg.DagsterInstance,
    store_url: str,
    cursor: str | None,
    *,
    endpoint: str | None = None,
    stale_hours: float = 24.0,
    key_dir: Path | None = None,
) -> dg.SensorResult:
    """Evaluate the real sensor once and apply its partition requests, as the daemon would."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "object_store": ObjectStoreResource(url=store_url, endpoint_url=endpoint),
            "landing": LandingSettingsResource(stale_after_hours=stale_hours),
            "keyring": KeyRingResource(key_dir=str(key_dir or _KEY_DIRS.setdefault(store_url, tempfile.mkdtemp()))),
        },
    )
    result = landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
    return result


def test_complete_drops_become_partitions_and_runs_once(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_drop(store, "hospital-a", "drop-1", {"n.txt": b"note one\n"})
    write_drop(store, "hospital-b", "drop-1", {"n.txt": b"note two\n"})
    store.put_bytes("landing/hospital-a/drop-2/partial.txt", b"no drop.json yet\n")  # incomplete
    with dg.instance_for_test() as instance:
        first = tick(instance, store.url, None)
        keys = sorted(r.partition_key for r in first.run_requests or [])  # type: ignore[misc]
        assert keys == ["hospital-a/drop-1", "hospital-b/drop-1"]
        assert all(r.run_key == f"drop:{r.partition_key}" for r in first.run_requests or [])
        # The sensor targets two jobs, so every request must name its job (the daemon refuses it otherwise).
        assert {r.job_name for r in first.run_requests or []} == {"process_drop"}
        assert sorted(instance.get_dynamic_partitions(drops_partitions.name)) == keys
        assert "hospital-a/drop-2" in json.loads(first.cursor or "{}")["first_seen"]
        second = tick(instance, store.url, first.cursor)
        assert second.run_requests == [] and not second.dynamic_partitions_requests
        # The partial drop completes: picked up now, and only it.
        write_drop(store, "hospital-a", "drop-2", {"partial.txt": b"no drop.json yet\n"})
        third = tick(instance, store.url, second.cursor)
        assert [r.partition_key for r in third.run_requests or []] == ["hospital-a/drop-2"]
        assert json.loads(third.cursor or "{}")["first_seen"] == {}
        assert tick(instance, store.url, third.cursor).run_requests == []


def test_sensor_on_s3(s3_store: ObjectStore, s3_endpoint: str) -> None:
    write_drop(s3_store, "pacs", "2026-11-01", {"dicom/a.dcm": b"\0" * 128 + b"DICM"})
    with dg.instance_for_test() as instance:
        first = tick(instance, s3_store.url, None, endpoint=s3_endpoint)
        assert [r.partition_key for r in first.run_requests or []] == ["pacs/2026-11-01"]
        assert tick(instance, s3_store.url, first.cursor, endpoint=s3_endpoint).run_requests == []


def test_unsafe_names_and_stale_drops_go_to_the_reject_job(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    store.put_bytes("landing/src/bad name/x.txt", b"x")
    store.put_bytes("landing/src/bad name/drop.json", b"{}")
    store.put_bytes("landing/src/slow/x.txt", b"x")
    with dg.instance_for_test() as instance:
        first = tick(instance, store.url, None, stale_hours=1)
        rejects = [r for r in first.run_requests or [] if r.job_name == "reject_landing_job"]
        assert len(rejects) == 1 and "unsafe_name" in (rejects[0].run_key or "")
        assert "bad name" not in json.dumps(rejects[0].run_config)  # only hashes travel
        cursor = json.loads(first.cursor or "{}")
        cursor["first_seen"] = {k: v - 2 * 3600 for k, v in cursor["first_seen"].items()}  # two hours pass
        second = tick(instance, store.url, json.dumps(cursor), stale_hours=1)
        reasons = [r.run_config["ops"]["reject_landing_folders"]["config"]["reason"] for r in second.run_requests or []]
        assert sorted(reasons) == ["stale_incomplete_drop", "unsafe_name"]
        assert instance.get_dynamic_partitions(drops_partitions.name) == []


class CountingStore:
    """The real local store, counting what each scan costs (delegates every call; not a mock)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.listed_objects, self.children_calls, self.heads = inner, 0, 0, 0

    def list(self, prefix: str, **kw: object) -> Iterator[ObjectInfo]:
        for info in self.inner.list(prefix, **kw):  # type: ignore[arg-type]
            self.listed_objects += 1
            yield info

    def list_children(self, prefix: str) -> Iterator[str]:
        self.children_calls += 1
        return self.inner.list_children(prefix)

    def head(self, key: str) -> ObjectInfo | None:
        self.heads += 1
        return self.inner.head(key)


@pytest.mark.parametrize("drops,files_per_drop", [(100, 100)])
def test_ten_thousand_objects_are_not_relisted_on_every_tick(tmp_path: Path, drops: int, files_per_drop: int) -> None:
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    root = tmp_path / "data" / "landing"
    for d in range(drops):  # 10,000 files written directly: fast, and the same tree a source would leave
        folder = root / f"src-{d % 4}" / f"drop-{d:04d}"
        folder.mkdir(parents=True)
        for f in range(files_per_drop - 1):
            (folder / f"f{f:03d}.txt").write_bytes(b"x")
        (folder / "drop.json").write_bytes(b"{}")
    assert sum(1 for _ in store.list("landing/")) == drops * files_per_drop
    counting = CountingStore(store)
    names = NameKey(b"k" * 32)
    first = discover_drops(counting, names=names, known=set(), first_seen={}, now=0.0)  # type: ignore[arg-type]
    assert len(first.complete) == drops
    assert counting.listed_objects == 0  # no object listing at all, only folders
    assert counting.heads == drops and counting.children_calls == 1 + 4
    known = {f"{s}/{d}" for s, d in first.complete}
    counting.heads = counting.children_calls = 0
    again = discover_drops(counting, names=names, known=known, first_seen={}, now=1.0)  # type: ignore[arg-type]
    assert again.complete == [] and counting.heads == 0 and counting.listed_objects == 0
    with dg.instance_for_test() as instance:  # and the real sensor over the same tree
        result = tick(instance, store.url, None)
        assert len(result.run_requests or []) == drops
        assert tick(instance, store.url, result.cursor).run_requests == []


def test_sensor_through_the_dagster_cli_code_server(tmp_path: Path) -> None:
    """`dagster sensor preview` evaluates the sensor in a code server and resolves its run requests
    against the jobs, exactly as the daemon does (a request lacking its job name fails here)."""
    repo = Path(__file__).resolve().parent.parent
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    env |= {
        "DAGSTER_HOME": str(home),
        "CLINICAL_PIPELINES_DATA_DIR": str(tmp_path / "data"),
        "CLINICAL_PIPELINES_KEY_DIR": str(tmp_path / "keys"),
    }
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_drop(store, "src", "d1", {"a.txt": b"note\n"})
    write_drop(store, "src", "d2", {"b.txt": b"note\n"})
    store.put_bytes("landing/src/bad name/drop.json", b"{}")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "sensor", "preview", "landing_sensor", "-w", "workspace.yaml"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Sensor returning run requests for 3 run(s)" in proc.stdout
    assert "bad name" not in proc.stdout + proc.stderr


def test_reject_job_moves_unsafe_folders_to_quarantine_and_spares_drops_completed_since(tmp_path: Path) -> None:
    from clinical_pipelines.definitions import build_definitions
    from clinical_pipelines.landing.discovery import folder_id
    from clinical_pipelines.quarantine import Quarantine
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.storage.names import load_name_key

    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store = settings.open_store()
    store.put_bytes("landing/src/bad name/a.txt", b"bytes to keep\n")
    store.put_bytes("landing/src/bad name/drop.json", b"{}")
    write_drop(store, "src", "late", {"b.txt": b"arrived late but complete\n"})
    names = load_name_key(store, settings.keyring())
    unsafe = folder_id(names, "landing/src/bad name/")
    late = folder_id(names, "landing/src/late/")
    job = build_definitions(settings).resolve_job_def("reject_landing_job")
    with dg.instance_for_test() as instance:
        for hashes, reason in (([unsafe], "unsafe_name"), ([late], "stale_incomplete_drop")):
            config = {"ops": {"reject_landing_folders": {"config": {"folder_ids": hashes, "reason": reason}}}}
            assert job.execute_in_process(run_config=config, instance=instance).success
    assert list(store.list("landing/src/bad name/")) == []
    assert len(list(store.list("landing/src/late/"))) == 2  # completed meanwhile: left for the sensor
    quarantine = Quarantine(store, settings.keyring())
    records = {quarantine.original_path(r): r for r in quarantine.records()}
    assert set(records) == {"a.txt", "drop.json"}
    with quarantine.open_original(records["a.txt"]) as fh:
        assert fh.read() == b"bytes to keep\n"
    assert all(r.reason == "unsafe_name" and "bad name" not in json.dumps(r.public()) for r in records.values())
