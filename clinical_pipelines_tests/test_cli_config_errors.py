"""Every ``clinical-pipelines`` command, with a missing, a bad and an unreadable master key: one line naming the
variable or file and the fix, exit status 2, never a traceback (real subprocesses)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import click
import pytest

from clinical_pipelines.cli import main
from clinical_pipelines_tests.hostile import CLI


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _leaves(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def _args(tmp: Path) -> dict[tuple[str, ...], list[str]]:
    """Arguments that get each command past its own parsing, to where it needs configuration."""
    data = str(tmp / "data")
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in.csv").write_text("mrn,admission_date,discharge_date,outcome,age_at_admission\n")
    (tmp / "mapping.enc").write_bytes(b"CPENV2\n\0\0\0\0")
    (tmp / "x.head.json").write_text("{}")
    return {
        ("synth",): ["--out", data, "--patients", "1", "--slices", "1"],
        ("run",): ["--data-dir", data],
        ("quarantine", "list"): ["--data-dir", data],
        ("deid", "dicom"): [str(tmp / "in"), str(tmp / "out"), "--mapping", str(tmp / "m1.enc")],
        ("deid", "notes"): [str(tmp / "in"), str(tmp / "out"), "--mapping", str(tmp / "m2.enc")],
        ("deid", "table"): [str(tmp / "in.csv"), str(tmp / "out.csv")],
        ("deid", "mapping"): [str(tmp / "mapping.enc")],
        ("catalog", "search"): ["--data-dir", data],
        ("catalog", "show"): ["brain_mr", "--data-dir", data],
        ("manifest", "verify"): ["brain_mr", "--data-dir", data],
        ("manifest", "provenance"): ["brain_mr", "--data-dir", data],
        ("reproduce",): ["brain_mr", "--to", str(tmp / "repro"), "--data-dir", data],
        ("runs", "register"): ["--manifest", "brain_mr", "--run-id", "r1", "--data-dir", data],
        ("audit", "verify"): ["--data-dir", data],
        ("audit", "export"): ["--data-dir", data],
        ("audit", "verify-export"): [str(tmp / "x.head.json")],
        ("audit", "public-key"): ["--data-dir", data],
        ("keys", "rotate"): ["--data-dir", data],
        ("hold", "add"): ["brain_mr", "--case", "C-1", "--data-dir", data],
        ("hold", "remove"): ["brain_mr", "--case", "C-1", "--data-dir", data],
        ("hold", "list"): ["--data-dir", data],
        ("lifecycle", "set"): ["brain_mr@1", "frozen", "--reason", "release-candidate", "--data-dir", data],
        ("keys", "status"): ["--data-dir", data],
        ("access", "grant"): ["alice", "--action", "read", "--data-dir", data],
        ("access", "revoke"): ["alice", "--action", "read", "--data-dir", data],
        ("access", "list"): ["--data-dir", data],
        ("access", "close-project"): ["brain_mr", "--data-dir", data],
        ("access", "init"): ["--admin", "root", "--data-dir", data],
    }


# An auditor's check of exported files: it reads no configuration, so even a broken one does not stop it.
NO_CONFIGURATION = {("audit", "verify-export")}
# Commands that read or write PHI zones, or encrypt a mapping: they need the master key.
NEEDS_MASTER_KEY = {("run",), ("quarantine", "list"), ("deid", "dicom"), ("deid", "notes"), ("deid", "mapping"),
                    ("keys", "rotate"), ("keys", "status")}  # fmt: skip


def test_the_table_covers_every_command(tmp_path: Path) -> None:
    assert sorted(_args(tmp_path)) == sorted(_leaves(main))


def _scenario(name: str, tmp: Path) -> tuple[dict[str, str], str]:
    """(environment, what the error must name) for one broken configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    env |= {
        "CLINICAL_PIPELINES_KEY_DIR": str(tmp / "keys"),
        "CLINICAL_PIPELINES_DEID_KEY": base64.b64encode(b"d" * 32).decode(),
        "DAGSTER_HOME": str(tmp / "dagster_home"),
        "GX_ANALYTICS_ENABLED": "False",
    }
    (tmp / "dagster_home").mkdir(exist_ok=True)
    (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    if name == "missing":  # production without a master key: never generated
        env["CLINICAL_PIPELINES_ENV"] = "production"
        return env, "CLINICAL_PIPELINES_MASTER_KEY"
    if name == "bad":
        env["CLINICAL_PIPELINES_MASTER_KEY"] = "not base64 at all!"
        return env, "CLINICAL_PIPELINES_MASTER_KEY"
    keys = tmp / "keys"  # unreadable: a key folder whose current key file is not a key file
    keys.mkdir(mode=0o700)
    (keys / "current").write_text("local-0123")
    (keys / "local-0123.key").write_text("{{ this is not json")
    os.chmod(keys / "local-0123.key", 0o600)
    return env, str(keys / "local-0123.key")


@pytest.mark.parametrize("scenario", ["missing", "bad", "unreadable"])
def test_every_command_reports_key_problems_in_one_line(tmp_path: Path, scenario: str) -> None:
    env, named = _scenario(scenario, tmp_path)
    outcomes = {}
    for command, args in _args(tmp_path).items():
        proc = subprocess.run([CLI, *command, *args], env=env, capture_output=True, text=True, timeout=300)
        text = proc.stdout + proc.stderr
        assert "Traceback" not in text, (command, text[-3000:])
        outcomes[" ".join(command)] = (proc.returncode, proc.stderr.strip())
        if command in NO_CONFIGURATION:
            assert proc.returncode == 1 and "is missing: it belongs beside" in proc.stderr, (command, text[-2000:])
            continue
        if command in NEEDS_MASTER_KEY or scenario == "missing":  # production refuses every other command
            assert proc.returncode == 2, (command, text[-2000:])
        if proc.returncode == 2:
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (command, proc.stderr)
            if command in NEEDS_MASTER_KEY or scenario == "missing":
                assert named in lines[0], (command, lines[0])
                assert "not base64 at all" not in lines[0]  # never the value itself
    print(json.dumps(outcomes, indent=1))


def test_malformed_numbers_and_limits_name_their_variable(tmp_path: Path) -> None:
    env, _ = _scenario("bad", tmp_path)
    del env["CLINICAL_PIPELINES_MASTER_KEY"]
    for variable in ("CLINICAL_PIPELINES_INGEST_WORKERS", "CLINICAL_PIPELINES_MAX_DICOM_MB"):
        proc = subprocess.run(
            [CLI, "quarantine", "list", "--data-dir", str(tmp_path / "data")],
            env={**env, variable: "lots"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and variable in proc.stderr
