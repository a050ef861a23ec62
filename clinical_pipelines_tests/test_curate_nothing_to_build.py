"""A dataset spec with nothing to build (a DICOM-only landing, specs needing tables) never fails a run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import dagster as dg

from clinical_pipelines.defs.curate.assets import QUALITY_CHECK, curated_key
from clinical_pipelines_tests.corpus import put_drops, small_corpus
from clinical_pipelines_tests.test_pipeline import BIN, _env, settings_for


def test_dicom_only_landing_run_succeeds_and_says_no_matching_objects(tmp_path: Path, monkeypatch) -> None:
    env = _env(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # the instance's dagster.yaml names its home by it
    settings = settings_for(tmp_path)
    drops, _ = small_corpus()
    dicom_only = [d for d in drops if {f.modality for f in d.files} == {"dicom"}][:1]
    assert dicom_only
    put_drops(settings.open_store(), dicom_only)
    cli = str(BIN / "clinical-pipelines")
    proc = subprocess.run(
        [cli, "run", "--data-dir", str(settings.data_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    curated = {c["dataset"]: c for c in summary["curated"]}
    assert curated["notes_labs"]["version"] is None and curated["notes_labs"]["skipped"] == "no matching objects"
    assert curated["chest_ct_outcomes"]["version"] is None  # needs tables: nothing to build either
    assert curated["brain_mr"]["version"] == 1  # the spec that matches still builds
    # The check reports the skip (passed, with its reason) and no version was materialized.
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_latest_materialization_event(curated_key("notes_labs")) is None
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(curated_key("notes_labs"), QUALITY_CHECK)]
        )[dg.AssetCheckKey(curated_key("notes_labs"), QUALITY_CHECK)]
        evaluation = check.event.dagster_event.event_specific_data  # type: ignore[union-attr]
        assert evaluation.passed and "no matching objects" in (evaluation.description or "")
    # The plain-text summary prints it too, and a second run still exits 0.
    again = subprocess.run(
        [cli, "run", "--data-dir", str(settings.data_dir)], env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "curated notes_labs: no matching objects" in again.stdout
