"""The Dagster instance kept beside a data folder (``DIR/.dagster``) when ``$DAGSTER_HOME`` is not set.

Its ``dagster.yaml`` turns telemetry off and keeps every run's events in one SQLite database
(Dagster's ``ConsolidatedSqliteEventLogStorage``, WAL and busy timeout, with one engine per process:
:mod:`clinical_pipelines.instance_storage`) instead of Dagster's default of one
database per run, which each run creates, migrates and stamps, and whose every event opens its own
file: about a second of every small run. The file names its folder by absolute path, so it is written
again (same storage, new path) whenever the folder was moved. A ``dagster.yaml`` this module did not
write is never touched: a folder whose runs are kept per run stays that way (its history is there).
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "# written by clinical-pipelines for the instance beside a data folder; rewritten when the folder moves\n"


def instance_yaml(home: Path) -> str:
    """The ``dagster.yaml`` of the instance in ``home`` (an absolute path is written)."""
    base = str(home.resolve())  # JSON's string form is YAML's double-quoted form: any path stays one string
    return (
        f"{MARKER}telemetry:\n  enabled: false\n"
        "event_log_storage:\n  module: clinical_pipelines.instance_storage\n"
        f"  class: ProcessEngineSqliteEventLogStorage\n  config:\n    base_dir: {json.dumps(base)}\n"
    )


def prepare_home(home: Path) -> Path:
    """Make ``home`` hold this module's ``dagster.yaml`` unless it holds one written otherwise; returns ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = instance_yaml(home)
    try:
        current = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current is None or (current.startswith(MARKER) and current != wanted):
        tmp = config.with_name(".dagster.yaml.tmp")
        tmp.write_text(wanted, encoding="utf-8")
        tmp.replace(config)
    return home
