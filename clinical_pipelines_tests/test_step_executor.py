"""Every job's steps are forked from a forkserver that imported the definitions and the engines once per run."""

from __future__ import annotations

import subprocess
import sys

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.defs.executor import PRELOADED_MODULES, step_executor


def test_every_job_runs_its_steps_through_the_preloading_forkserver(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLINICAL_PIPELINES_DATA_DIR", str(tmp_path))
    defs = build_definitions()
    jobs = [job for job in defs.resolve_all_job_defs() if not job.name.startswith("__ASSET_JOB")]
    assert jobs
    for job in [*jobs, defs.resolve_implicit_global_asset_job_def()]:
        assert job.executor_def is step_executor, job.name
    assert step_executor.name == "multiprocess_forkserver"


def test_the_preloaded_modules_import_the_engines_start_no_thread_and_leave_torch_alone() -> None:
    """A forkserver forks from the state these imports leave: they must load what steps import lazily (Great
    Expectations, Presidio, spaCy), skip the torch backend the engines never use, and leave no thread running."""
    script = (
        "import importlib, sys, threading\n"
        f"for name in {PRELOADED_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('great_expectations', 'presidio_analyzer', 'spacy', 'torch') if m in sys.modules))\n"
        "print(threading.active_count())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    modules, threads = done.stdout.strip().splitlines()[-2:]
    assert modules == "['great_expectations', 'presidio_analyzer', 'spacy']"
    assert threads == "1"
