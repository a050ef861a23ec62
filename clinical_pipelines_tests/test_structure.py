"""The package's shape: the CLI's help path imports no heavy engine, every command group is its own module, engines
import neither Dagster nor the synthetic data."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
        "audit": "clinical_pipelines.cli.audit",
        "access": "clinical_pipelines.cli.access",
        "keys": "clinical_pipelines.cli.keys",
        "hold": "clinical_pipelines.cli.holds",
        "lifecycle": "clinical_pipelines.cli.lifecycle",
    }


ENGINES = ("storage", "landing", "raw", "validate", "deid", "curate", "catalog", "training")
PACKAGE = Path(__file__).resolve().parent.parent / "clinical_pipelines"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at any depth: lazy imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_import_neither_dagster_nor_the_synthetic_data(engine: str) -> None:
    files = sorted((PACKAGE / engine).rglob("*.py"))
    assert files
    bad = {
        str(f.relative_to(PACKAGE)): sorted(m for m in _imports(f) if m.split(".")[0] == "dagster"
                                            or m.startswith("clinical_pipelines.synth"))
        for f in files
    }  # fmt: skip
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_synthetic_data_is_imported_only_by_the_cli_and_itself() -> None:
    users = {
        str(f.relative_to(PACKAGE))
        for f in PACKAGE.rglob("*.py")
        if any(m.startswith("clinical_pipelines.synth") for m in _imports(f))
    }
    assert users and all(u.startswith(("synth/", "cli/")) for u in users), users
