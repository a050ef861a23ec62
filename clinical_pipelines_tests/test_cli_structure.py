"""The command line's shape: the help path imports no heavy engine, and every group is a module of the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"dagster", "great_expectations", "presidio_analyzer", "presidio_anonymizer", "spacy", "pydicom", "torch"}


def _imported(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "clinical_pipelines.cli", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Usage:" in proc.stdout
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}


@pytest.mark.parametrize(
    "args", [("--help",), ("deid", "--help"), ("deid", "dicom", "--help"), ("catalog", "search", "--help"),
             ("run", "--help"), ("manifest", "verify", "--help")],
)  # fmt: skip
def test_help_imports_no_dagster_gx_presidio_or_models(args: tuple[str, ...]) -> None:
    imported = _imported(*args)
    assert "click" in imported and "clinical_pipelines" in imported  # the import log was read
    assert imported & HEAVY == set()


def test_every_command_comes_from_its_group_module() -> None:
    from clinical_pipelines.cli import main

    modules = {name: command.callback.__module__ for name, command in main.commands.items()}  # type: ignore[union-attr]
    assert modules == {
        "synth": "clinical_pipelines.cli.synth",
        "run": "clinical_pipelines.cli.run",
        "quarantine": "clinical_pipelines.cli.quarantine",
        "deid": "clinical_pipelines.cli.deid",
        "catalog": "clinical_pipelines.cli.catalog",
        "manifest": "clinical_pipelines.cli.versions",
        "reproduce": "clinical_pipelines.cli.versions",
        "runs": "clinical_pipelines.cli.versions",
    }
