"""From landing to de-identified on the Dagster UI path (``make dev``): a real ``dagster dev`` (webserver and
daemon, the landing sensor, the multiprocess executor: one process per step), as a new user runs it.

    .venv/bin/python benchmarks/dev_latency.py [--patients 2] [--slices 4] [--timeout 900]

Starts ``dagster dev -w workspace.yaml`` on a throwaway ``DAGSTER_HOME`` and data folder, waits for the
webserver, writes the sample drops of ``clinical-pipelines synth`` into landing (the ``make dev`` sample, without
the fault drops), and prints for each drop, in seconds from the moment the drops were complete: when the
sensor's run was created, when it started, when its first raw, last validated and last de-identified asset was
materialized, and when the run ended (all read back from the instance). The wait for the sensor's next tick (its
interval is 10 s) is part of what a user waits for, so it is included. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"dagster dev exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"dagster dev did not answer on {url} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    import dagster as dg

    from clinical_pipelines.settings import Settings
    from clinical_pipelines.synth import SynthCorpus
    from clinical_pipelines.synth.landing import write_corpus

    work = Path(tempfile.mkdtemp(prefix="bench-dev-"))
    home, data, keys = work / "dagster_home", work / "data", work / "keys"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CLINICAL_PIPELINES_DATA_DIR": str(data),
           "CLINICAL_PIPELINES_KEY_DIR": str(keys)}  # fmt: skip
    port = _free_port()
    dagster = str(Path(sys.executable).with_name("dagster"))
    log = (work / "dagster-dev.log").open("wb")
    command = [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        _wait_for(f"http://127.0.0.1:{port}/server_info", proc, 300)
        print(f"dagster dev answering after {time.monotonic() - started:.1f} s")
        for name in ("DAGSTER_HOME", "CLINICAL_PIPELINES_DATA_DIR", "CLINICAL_PIPELINES_KEY_DIR"):
            os.environ[name] = env[name]
        settings = Settings.from_env()
        corpus = SynthCorpus(7, n_patients=args.patients, slices_per_series=args.slices, notes_per_patient=2)
        written = write_corpus(settings.open_store(), corpus, faults=False)
        t0 = time.time()
        print(f"wrote {written.drops} drops, {written.files} files, {written.bytes / 1e6:.1f} MB into landing")
        instance = dg.DagsterInstance.get()
        done: dict[str, dg.RunRecord] = {}
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and len(done) < written.drops:
            for record in instance.get_run_records(dg.RunsFilter(job_name="process_drop")):
                if record.dagster_run.is_finished:
                    done[record.dagster_run.tags.get("dagster/partition", record.dagster_run.run_id)] = record
            time.sleep(1)
        if len(done) < written.drops:
            print(f"only {len(done)} of {written.drops} drops finished within {args.timeout:.0f} s")
        print(f"\n{'drop':<34} {'run created':>11} {'started':>8} {'raw':>6} {'validated':>9} {'deid':>6} "
              f"{'ended':>6}  status   (s after the drops were complete)")  # fmt: skip
        for key, record in sorted(done.items()):
            stage_times: dict[str, list[float]] = {}
            materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
            for entry in instance.all_logs(record.dagster_run.run_id, of_type=materialized):
                event = entry.dagster_event
                if event is not None and event.asset_key is not None:
                    stage_times.setdefault(event.asset_key.path[0], []).append(entry.timestamp - t0)

            def at(stage: str, last: bool = True, times: dict[str, list[float]] = stage_times) -> str:
                values = times.get(stage)
                return f"{(max(values) if last else min(values)):.1f}" if values else "-"

            run = record.dagster_run
            print(f"{key[:34]:<34} {record.create_timestamp.timestamp() - t0:11.1f} "
                  f"{(record.start_time or t0) - t0:8.1f} {at('raw', last=False):>6} {at('validated'):>9} "
                  f"{at('deidentified'):>6} {(record.end_time or t0) - t0:6.1f}  {run.status.value}")  # fmt: skip
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
