"""The ingest stage through Dagster: in-process runs, the dagster CLI, the headless CLI, lineage and no PHI anywhere."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.defs.ingest.assets import raw_key
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth.landing import FAULTY_SOURCE, write_faulty_drops
from clinical_pipelines.version import code_version
from clinical_pipelines_tests.conftest import make_bucket
from clinical_pipelines_tests.corpus import files_under, find_planted, put_drops, small_corpus

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LINEAGE_KEYS = {"drop_id", "source", "file_count", "bytes", "sha256_list_digest", "throughput_mb_s", "code_version"}


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys", **overrides)


def run_drop(settings: Settings, instance: dg.DagsterInstance, key: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("drops", [key])
    job = build_definitions(settings).resolve_job_def("process_drop")
    return job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def latest_metadata(instance: dg.DagsterInstance, modality: str, partition: str) -> dict[str, object]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key(modality), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of raw/{modality} for {partition}"
    mat = records[0].asset_materialization
    assert mat is not None
    return {k: v.value for k, v in mat.metadata.items()}


def test_drop_run_materializes_raw_with_lineage_metadata(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    drops, _ = small_corpus()
    drop = next(d for d in drops if {f.modality for f in d.files} == {"notes", "tabular"})
    put_drops(settings.open_store(), [drop])
    key = f"{drop.source}/{drop.drop_id}"
    with dg.instance_for_test() as instance:
        result = run_drop(settings, instance, key)
        assert result.success
        # the drop holds no DICOM: raw/dicom is not materialized and its later steps are skipped, not run
        assert not instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw_key("dicom"), asset_partitions=[key]), limit=1
        ).records
        skipped = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_SKIPPED}
        assert skipped == {"validated__dicom", "deidentified__dicom"}
        for modality in ("notes", "tabular"):
            meta = latest_metadata(instance, modality, key)
            assert set(meta) >= LINEAGE_KEYS
            files = [f for f in drop.files if f.modality == modality]
            assert meta["file_count"] == len(files)
            assert meta["bytes"] == sum(len(f.data) for f in files)
            lines = sorted(f"{hashlib.sha256(f.data).hexdigest()} {len(f.data)}\n" for f in files)
            assert meta["sha256_list_digest"] == hashlib.sha256("".join(lines).encode()).hexdigest()
            assert meta["code_version"] == code_version()
            assert (meta["drop_id"], meta["source"]) == (drop.drop_id, drop.source)
            assert meta["quarantined_count"] == 0


def test_faulty_drop_run_succeeds_and_counts_quarantine(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    drops, _ = small_corpus()
    write_faulty_drops(settings.open_store(), drops[0])
    with dg.instance_for_test() as instance:
        result = run_drop(settings, instance, f"{FAULTY_SOURCE}/drop-mixed")
        assert result.success
        meta = latest_metadata(instance, "dicom", f"{FAULTY_SOURCE}/drop-mixed")
        assert meta["quarantined_count"] == 6
        assert meta["quarantined_by_reason"]["size_mismatch"] == 1  # type: ignore[index]


def test_changed_drop_fails_the_run_with_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = settings.open_store()
    write_drop(store, "src", "d1", {"a.txt": b"version one of a note\n"})
    with dg.instance_for_test() as instance:
        assert run_drop(settings, instance, "src/d1").success
        write_drop(store, "src", "d1", {"a.txt": b"version two of a note\n"})
        result = run_drop(settings, instance, "src/d1")
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "ingested before with different content" in str(failure.step_failure_data.error)  # type: ignore[union-attr]


def test_s3_store_end_to_end_through_dagster(tmp_path: Path, s3_endpoint: str) -> None:
    settings = settings_for(tmp_path, store_url=f"s3://{make_bucket(s3_endpoint)}/zones", s3_endpoint_url=s3_endpoint)
    drops, canaries = small_corpus()
    put_drops(settings.open_store(), drops[:1])
    key = f"{drops[0].source}/{drops[0].drop_id}"
    with dg.instance_for_test() as instance:
        assert run_drop(settings, instance, key).success
        assert latest_metadata(instance, "dicom", key)["file_count"] == len(drops[0].files)
    store = settings.open_store()
    raw = [(i.key, store.open_read(i.key).read()) for i in store.list("raw/")]
    assert raw and find_planted(raw, canaries) == []


def test_no_phi_in_event_log_metadata_logs_or_instance_storage(tmp_path: Path) -> None:
    """Plant identifiers (in content and in file names), run everything, grep every byte Dagster kept."""
    settings = settings_for(tmp_path)
    store = settings.open_store()
    drops, canaries = small_corpus()
    put_drops(store, drops)
    write_faulty_drops(store, drops[0])
    # A source that names files after patients: the name must not leak through metadata or logs.
    named = {f"notes/{canaries[0].replace(' ', '_')}.txt": b"a note file named after a patient\n"}
    write_drop(store, "src", "named-files", named)
    planted = (*canaries, next(iter(named)).split("/")[1])
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        from clinical_pipelines.headless import process_landing

        summary = process_landing(settings, instance)
        assert len(summary.drops) == len(drops) + 3 and summary.rejected_folders == 1
        assert [d.partition_key for d in summary.failed] == []
        ingested = set()  # each drop materializes the raw modalities it holds (all of them when it holds none)
        for modality in DROP_MODALITIES:
            records = instance.fetch_materializations(raw_key(modality), limit=1000).records
            ingested |= {r.partition_key for r in records}
        assert ingested == {d.partition_key for d in summary.drops}
        log_text = [
            (r.run_id, json.dumps([e.message + repr(e.dagster_event) for e in instance.all_logs(r.run_id)]))
            for r in instance.get_runs()
        ]
        assert find_planted([(w, t.encode()) for w, t in log_text], planted) == []
    # Every byte the instance stored (SQLite event log, run storage, compute logs).
    assert find_planted(files_under(home), planted) == []
    # Every byte in the zones that hold data at rest, outside landing.
    assert find_planted(files_under(settings.data_dir, exclude=[settings.data_dir / "landing"]), planted) == []


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    env.update(
        {
            "CLINICAL_PIPELINES_DATA_DIR": str(tmp_path / "data"),
            "CLINICAL_PIPELINES_KEY_DIR": str(tmp_path / "keys"),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", tmp_path / "home" / "dagster.yaml")
    return env


def test_dagster_cli_materializes_a_drop_partition(tmp_path: Path) -> None:
    env = _env(tmp_path)
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_drop(store, "src", "cli-drop", {"n.txt": b"a short clinical note for the CLI test\n"})
    os.environ["DAGSTER_HOME"], saved = env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("drops", ["src/cli-drop"])
        proc = subprocess.run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "clinical_pipelines.definitions",
                "--select",
                "raw/dicom,raw/notes,raw/tabular",
                "--partition",
                "src/cli-drop",
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        with dg.DagsterInstance.get() as instance:
            assert latest_metadata(instance, "notes", "src/cli-drop")["file_count"] == 1
            no_dicom = dg.AssetRecordsFilter(asset_key=raw_key("dicom"), asset_partitions=["src/cli-drop"])
            assert not instance.fetch_materializations(no_dicom, limit=1).records  # a notes-only drop
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = saved


def test_headless_run_command_processes_landing_and_is_idempotent(tmp_path: Path) -> None:
    env = _env(tmp_path)
    cli = str(BIN / "clinical-pipelines")
    synth = subprocess.run(
        [cli, "synth", "--out", str(tmp_path / "data"), "--seed", "3", "--faults", "--slices", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert synth.returncode == 0, synth.stderr
    first = subprocess.run(
        [cli, "run", "--data-dir", str(tmp_path / "data"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert len(summary["drops"]) == 7 and summary["rejected_folders"] == 1
    stopped = [d for d in summary["drops"] if not d["promoted"]]
    assert [d["partition_key"] for d in stopped] == ["faulty-source/drop-invalid"]
    assert "tabular_suite" in stopped[0]["checks_failed"] and stopped[0]["stopped_by_checks"]
    assert summary["files"] > 0 and summary["quarantined"] == 8
    assert summary["dagster_home"] == env["DAGSTER_HOME"]
    # landing -> ... -> curated versions -> training-ready shards, in the one command
    built = [c for c in summary["curated"] if c["version"]]
    assert built and all(c["shards"] >= 1 and sum(c["samples_per_split"].values()) > 0 for c in built)
    assert all((tmp_path / "data" / c["index"]).is_file() for c in built)
    second = subprocess.run(
        [cli, "run", "--data-dir", str(tmp_path / "data"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0 and json.loads(second.stdout)["drops"] == []


@pytest.mark.parametrize(
    "command", [["--help"], ["synth", "--help"], ["run", "--help"], ["quarantine", "list", "--help"]]
)
def test_cli_help(command: list[str]) -> None:
    proc = subprocess.run([str(BIN / "clinical-pipelines"), *command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage" in proc.stdout
