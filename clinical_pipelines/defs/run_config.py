"""Run configuration shared by the sensors and the headless run: defined once, so both launch alike."""

from typing import Any

# Runs still log everything to the event log (the UI shows it); the console gets warnings only.
QUIET: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def reject_run_config(folder_ids: list[str], reason: str) -> dict[str, Any]:
    """Run config of ``reject_landing_job`` quarantining the landing folders with these keyed ids."""
    return {**QUIET, "ops": {"reject_landing_folders": {"config": {"folder_ids": folder_ids, "reason": reason}}}}
