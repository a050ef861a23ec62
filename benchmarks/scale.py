"""The scale part of ``benchmarks/pipeline.py --scale``: the headless pipeline on 1x..Nx the base landing, and
one landing sensor tick over many pending drops. Run through ``pipeline.py``; nothing here is a test."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import REPO, make_landing, settings_for

#: Dagster's default limit on one sensor evaluation (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS).
SENSOR_LIMIT_S = 60.0
STAGE_ORDER = {"ingest": 0, "validate": 1, "gate": 2, "deid": 3, "curate": 4, "shards": 5}


def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(sizes): 1.0 is linear growth."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-6)) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else float("nan")


def one_scale(args: argparse.Namespace, factor: int, root: Path) -> dict[str, Any]:
    """Generate ``factor`` x the base landing under ``root``, run the pipeline on it in a fresh process."""
    from clinical_pipelines.deid.secret import load_deid_key

    scaled = argparse.Namespace(**{**vars(args), "patients": args.patients * factor})
    started = time.perf_counter()
    landing = make_landing(root / "pipeline", root / "plain", scaled)
    generated = time.perf_counter() - started
    shutil.rmtree(root / "plain")  # only the standalone engines read the flat copy
    settings_for(root / "pipeline", root / "keys").keyring()  # keys first, outside the timing (as `run` does)
    load_deid_key(root / "keys", create=True)
    out = root / "result.json"
    command = [sys.executable, str(Path(__file__).with_name("pipeline.py")), "--workdir", str(root),
               "--headless-json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)
    result = json.loads(out.read_text())
    result.update(factor=factor, files=landing.total_files, mb=landing.total_bytes / 1e6, generated_s=generated,
                  modality_files=dict(landing.files))  # fmt: skip
    print(
        f"  {factor:>3}x: {landing.total_files} files, {landing.total_bytes / 1e6:.0f} MB, {len(landing.drops)} drops"
        f" (generated in {generated:.0f} s): {result['wall']:.1f} s, {landing.total_files / result['wall']:.1f}"
        f" files/s, {result['promoted']}/{result['drops']} drops promoted, peak RSS {result['rss_mib']:.0f} MiB"
        f" (largest worker {result['largest_child_rss_mib']:.0f} MiB)",
        flush=True,
    )
    return result


def print_scales(results: list[dict[str, Any]]) -> None:
    files = [r["files"] for r in results]
    stages = sorted({k for r in results for k in r["stages"]}, key=lambda k: (STAGE_ORDER.get(k.split("|")[0], 9), k))
    head = f"{'stage':<9}{'modality':<24}" + "".join(f"{r['factor']:>6}x wall s{'files/s':>9}" for r in results)
    print("\n" + head + f"{'exponent':>10}")
    print("-" * (len(head) + 10))

    def row(label: str, modality: str, seconds: list[float]) -> None:
        # files/s of a modality's row counts that modality's files; other rows count all files
        counts = [r["modality_files"].get(modality, r["files"]) for r in results]
        cells = "".join(f"{t:13.2f}{n / t if t > 0 else 0:9.1f}" for t, n in zip(seconds, counts, strict=True))
        print(f"{label:<9}{modality:<24}{cells}{growth_exponent(files, seconds):10.2f}")

    for key in stages:
        stage, modality = key.split("|")
        row(stage, modality, [r["stages"].get(key, 0.0) for r in results])
    print("-" * (len(head) + 10))
    walls = [r["wall"] for r in results]
    row("pipeline", "total (process_landing)", walls)
    row("", "outside the engines", [r["wall"] - sum(r["stages"].values()) for r in results])
    print(
        f"\ngrowth exponent of total wall time against files, {results[0]['factor']}x to {results[-1]['factor']}x: "
        f"{growth_exponent(files, walls):.2f} (target <= 1.1)"
    )
    print("peak RSS, pipeline process / largest worker: " + ", ".join(
        f"{r['factor']}x {r['rss_mib']:.0f} / {r['largest_child_rss_mib']:.0f} MiB" for r in results
    ))  # fmt: skip
    first, last = results[0], results[-1]
    print(
        f"  {last['factor'] / first['factor']:.0f}x the input took {last['rss_mib'] / first['rss_mib']:.2f}x the "
        "pipeline process's peak memory"
    )


def sensor_tick(pending: int, work: Path) -> None:
    """One landing sensor evaluation over ``pending`` complete, unregistered drops, then the next ones."""
    import dagster as dg

    from clinical_pipelines.defs.ingest.sensors import MAX_DROPS_PER_TICK, landing_sensor
    from clinical_pipelines.defs.resources import KeyRingResource, LandingSettingsResource, ObjectStoreResource
    from clinical_pipelines.landing.writer import write_drop
    from clinical_pipelines.storage.local import LocalObjectStore

    store = LocalObjectStore(work / "data", fsync=False)
    started = time.perf_counter()
    for i in range(pending):
        write_drop(store, f"site-{i % 4}", f"drop-{i:05d}", {"note.txt": b"a short note\n"})
    print(f"\nlanding sensor: {pending} complete drops pending (written in {time.perf_counter() - started:.1f} s), "
          f"at most {MAX_DROPS_PER_TICK} registered per tick; SQLite instance storage")  # fmt: skip
    home = work / "dagster"
    home.mkdir()
    from clinical_pipelines.local_instance import prepare_home

    prepare_home(home)  # the instance `clinical-pipelines run` keeps beside a data folder
    instance = dg.DagsterInstance.from_config(str(home))
    resources = {
        "object_store": ObjectStoreResource(url=store.url),
        "landing": LandingSettingsResource(stale_after_hours=24.0),
        "keyring": KeyRingResource(key_dir=str(work / "keys")),
    }
    cursor, registered, tick = None, 0, 0
    try:
        while True:
            tick += 1
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            started = time.perf_counter()
            result = landing_sensor(context)
            evaluated = time.perf_counter() - started
            started = time.perf_counter()  # what the daemon does with the result, timed apart
            for request in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys or []))
            applied = time.perf_counter() - started
            runs = len(result.run_requests or [])
            registered += runs
            share = 100 * evaluated / SENSOR_LIMIT_S
            print(f"  tick {tick}: evaluation {evaluated:.2f} s ({share:.1f} % of Dagster's {SENSOR_LIMIT_S:.0f} s "
                  f"limit), {runs} run requests; partitions added in {applied:.2f} s")  # fmt: skip
            cursor = result.cursor
            if runs == 0 or tick >= 10:
                break
    finally:
        instance.dispose()
    print(f"  {registered} of {pending} drops turned into runs in {tick} ticks")


def run_scales(args: argparse.Namespace, factors: list[int]) -> None:
    """The scale report: each factor's headless run, the per-stage table, exponents, memory, the sensor tick."""
    base = Path(args.workdir or ".")
    print(f"scale run: {args.patients} patients x {args.slices} slices per factor, factors {factors}", flush=True)
    results = []
    for factor in factors:
        root = Path(tempfile.mkdtemp(prefix=f"bench-scale-{factor}x-", dir=base)).resolve()
        try:
            results.append(one_scale(args, factor, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print_scales(results)
    work = Path(tempfile.mkdtemp(prefix="bench-sensor-", dir=base)).resolve()
    try:
        sensor_tick(args.pending, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
