"""The Dagster instance beside a data folder: one event-log database for every run, a foreign config left alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from clinical_pipelines.local_instance import MARKER, prepare_home


@dg.op
def _one() -> int:
    return 1


@dg.job
def _tiny() -> None:
    _one()


def test_every_run_writes_to_one_event_log_database(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "data" / ".dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for _ in range(3):
            assert _tiny.execute_in_process(instance=instance).success
        assert len(instance.get_runs()) == 3
        runs = {r.run_id for r in instance.get_runs()}
        assert all(instance.all_logs(run_id) for run_id in runs)
    databases = sorted(p.relative_to(home).as_posix() for p in home.rglob("*.db"))
    assert "event_log.db" in databases
    assert not [d for d in databases if Path(d).stem in runs]  # no database per run


def test_a_moved_folder_gets_its_new_path_and_a_foreign_config_is_never_rewritten(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / "a" / ".dagster")
    moved = tmp_path / "b" / ".dagster"
    moved.parent.mkdir()
    shutil.move(str(home), str(moved))
    prepare_home(moved)
    text = (moved / "dagster.yaml").read_text()
    assert text.startswith(MARKER) and str(moved.resolve()) in text and str(home) not in text
    foreign = tmp_path / "c" / ".dagster"
    foreign.mkdir(parents=True)
    (foreign / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # an older folder: runs kept per run
    prepare_home(foreign)
    assert (foreign / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
