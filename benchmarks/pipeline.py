"""Throughput of the headless pipeline, stage by stage, beside each engine run standalone on the same files.

    .venv/bin/python benchmarks/pipeline.py [--patients 16] [--slices 40] [--notes 2] [--workdir DIR]
                                            [--no-profile] [--top 25] [--scale 1,4,16 [--pending 1000]]

Generates a synthetic landing (default 16 patients x 40 slices: 640 CT/MR slices of 512x512 int16,
32 notes and 4 lab/outcome tables over 6 drops, about 340 MB), then, all in one run:

1. runs the headless pipeline on it (``clinical_pipelines.headless.process_landing``, what
   ``clinical-pipelines run`` runs: ingest -> validate -> de-identify -> curate -> shards, real
   Dagster jobs in process), timing each engine call inside it (wall and CPU, per stage and modality);
2. runs each engine standalone on the same files: the ingest engine over a copy of the same landing
   (and the read + sha256 + copy loop it is measured against), the validation engine on that raw zone,
   ``clinical-pipelines deid dicom`` (1 and 2 workers) and ``deid notes`` on the same files as plain
   folders (subprocesses, start-up included, as a user runs them), and the shard build on the curated
   version the pipeline made;
3. profiles a second headless run on a fresh copy (cProfile) and prints its top costs, aggregated by our
   module and by library (a builtin's own time is charged to the module that called it).

With ``--scale 1,4,16`` it instead runs the headless pipeline alone on 1x, 4x and 16x the base landing
(``--patients`` times each factor; each run in a fresh process, its landing generated beforehand and
deleted after), and prints per stage and scale the wall time and files/s, the growth exponent of each
stage's and the whole run's wall time against the number of files (least squares on log-log; 1.0 is
linear), the peak RSS of the pipeline process and of its largest worker process; then one landing
sensor tick over ``--pending`` (default 1,000) complete drops not yet registered, timed on its own
against Dagster's default sensor evaluation limit (60 s).

CPU time is the process's user + system time (all threads) plus that of its finished child processes.
Absolute figures depend on the machine's load: compare within one run only. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import inspect
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import baseline_python  # the ingest benchmark's own baseline loop (benchmarks/ is on the path)

REPO = Path(__file__).resolve().parent.parent
MODALITY_OF_SUFFIX = {".dcm": "dicom", ".txt": "notes", ".csv": "tabular"}


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu
        self.calls += 1


@dataclass
class Landing:
    """The generated landing: drops, and per modality the files (landing path) and their bytes."""

    drops: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total_files(self) -> int:
        return sum(self.files.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def make_landing(root: Path, plain: Path, args: argparse.Namespace) -> Landing:
    """Write the synthetic drops into ``root/landing`` and the same files, flat, into ``plain/<modality>/``."""
    from clinical_pipelines.landing.writer import write_drop
    from clinical_pipelines.storage.local import LocalObjectStore
    from clinical_pipelines.synth import SynthCorpus

    corpus = SynthCorpus(
        args.seed, n_patients=args.patients, slices_per_series=args.slices, notes_per_patient=args.notes
    )
    store = LocalObjectStore(root, fsync=False)
    landing = Landing()
    for modality in MODALITY_OF_SUFFIX.values():
        (plain / modality).mkdir(parents=True, exist_ok=True)
    for drop in corpus.iter_drops():
        write_drop(store, drop.source, drop.drop_id, {f.path: f.data for f in drop.files})
        landing.drops.append((drop.source, drop.drop_id))
        for f in drop.files:
            modality = MODALITY_OF_SUFFIX[Path(f.path).suffix.lower()]
            landing.files[modality] += 1
            landing.bytes[modality] += len(f.data)
            name = f"{drop.source}_{drop.drop_id}_{f.path.replace('/', '_')}"
            (plain / modality / name).write_bytes(f.data)
    return landing


# -- timing the engines inside the pipeline ------------------------------------------------------
class StageClock:
    """Wraps the engine entry points so each call inside the Dagster run is timed by (stage, modality)."""

    def __init__(self) -> None:
        self.timings: dict[tuple[str, str], Timing] = defaultdict(Timing)
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, owner: Any, name: str, stage: str, modality_of: Callable[..., str]) -> None:
        original = getattr(owner, name)
        clock = self

        def timed_iteration(key: tuple[str, str], iterator: Iterator[Any]) -> Iterator[Any]:
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                yield from iterator
            finally:
                clock.timings[key].add(time.perf_counter() - wall, cpu_seconds() - cpu)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            key = (stage, modality_of(*args, **kwargs))
            if inspect.isgeneratorfunction(original):  # timed while it is consumed
                return timed_iteration(key, original(*args, **kwargs))
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                return original(*args, **kwargs)
            finally:
                clock.timings[key].add(time.perf_counter() - wall, cpu_seconds() - cpu)

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def __enter__(self) -> StageClock:
        from clinical_pipelines.curate import build as curate_build
        from clinical_pipelines.deid.stage import DropDeidentifier
        from clinical_pipelines.raw.ingest import DropIngestor
        from clinical_pipelines.validate.engine import DropValidator

        self._wrap(DropIngestor, "ingest", "ingest", lambda *a, **k: "all")
        self._wrap(DropValidator, "validate", "validate", lambda self, s, d, m, *a, **k: m)
        self._wrap(DropDeidentifier, "deidentify", "deid", lambda self, s, d, m, *a, **k: m)
        self._wrap(curate_build, "build_version", "curate", lambda *a, **k: "all")
        import clinical_pipelines.training as training  # the training asset imports the name from the package
        from clinical_pipelines.defs.validate import gate

        self._wrap(training, "build_training_shards", "shards", lambda *a, **k: "all")
        self._wrap(training.StreamingDataset, "__iter__", "shards", lambda *a, **k: "read back (verify)")
        # the validation gate before each de-identified step reads the instance's event log
        self._wrap(gate, "validation_passed", "gate", lambda inst, m, *a, **k: m)
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()


def settings_for(data: Path, keys: Path) -> Any:
    from clinical_pipelines.settings import Settings

    return Settings.from_env({}, data_dir=data, key_dir=keys)


@contextlib.contextmanager
def instance_at(home: Path) -> Iterator[Any]:
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    from clinical_pipelines.local_instance import prepare_home

    prepare_home(home)  # the instance `clinical-pipelines run` keeps beside a data folder
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()


def headless(data: Path, keys: Path, home: Path) -> tuple[Any, float, float]:
    """process_landing on ``data``: (summary, wall s, CPU s)."""
    from clinical_pipelines.headless import process_landing

    settings = settings_for(data, keys)
    with instance_at(home) as instance:
        wall, cpu = time.perf_counter(), cpu_seconds()
        summary = process_landing(settings, instance)
        return summary, time.perf_counter() - wall, cpu_seconds() - cpu


# -- the engines standalone --------------------------------------------------------------------
def timed(run: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = run()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def standalone(work: Path, landing: Landing, keys: Path, pipeline_data: Path) -> dict[tuple[str, str], Timing]:
    """Each engine on its own, on the same files; timings keyed like the pipeline's."""
    from clinical_pipelines.raw.ingest import DropIngestor
    from clinical_pipelines.storage.local import LocalObjectStore
    from clinical_pipelines.storage.names import load_name_key
    from clinical_pipelines.training import build_training_shards
    from clinical_pipelines.training.manifest import latest_manifest_key
    from clinical_pipelines.validate.engine import DropValidator

    out: dict[tuple[str, str], Timing] = defaultdict(Timing)
    settings = settings_for(work / "engines", keys)
    store = settings.open_store()
    keyring, limits = settings.keyring(), settings.limits
    load_name_key(store, keyring)  # created once, as the pipeline's store had it before its first drop

    files = sorted(p for p in (work / "engines" / "landing").rglob("*") if p.is_file() and p.name != "drop.json")
    for path in files:
        path.read_bytes()  # page cache warm for both, like the pipeline's landing after generation
    _, wall, cpu = timed(lambda: baseline_python(files, work / "copy", fsync=True))
    out[("ingest", "read+sha256+copy loop, fsync")].add(wall, cpu)
    shutil.rmtree(work / "copy")

    ingestor = DropIngestor(store, keyring, workers=settings.ingest_workers, limits=limits)
    _, wall, cpu = timed(lambda: [ingestor.ingest(s, d) for s, d in landing.drops])
    out[("ingest", "all")].add(wall, cpu)

    validator = DropValidator(
        store, keyring, max_item_failure_fraction=settings.max_item_failure_fraction, limits=limits
    )
    for modality in ("dicom", "notes", "tabular"):
        _, wall, cpu = timed(lambda m=modality: [validator.validate(s, d, m) for s, d in landing.drops])
        out[("validate", modality)].add(wall, cpu)

    cli = [sys.executable, "-c", "from clinical_pipelines.cli import main; main()"]
    env = {**os.environ, "CLINICAL_PIPELINES_KEY_DIR": str(keys), "PYTHONPATH": str(REPO)}
    for label, command in (
        ("dicom", ["deid", "dicom", str(work / "plain" / "dicom"), str(work / "out-dicom-2"), "--workers", "2"]),
        ("dicom, 1 worker", ["deid", "dicom", str(work / "plain" / "dicom"), str(work / "out-dicom-1")]),
        ("notes", ["deid", "notes", str(work / "plain" / "notes"), str(work / "out-notes")]),
    ):
        result, wall, cpu = timed(
            lambda c=command: subprocess.run([*cli, *c], env=env, capture_output=True, text=True, check=False)
        )
        if result.returncode != 0:
            print(f"  (deid {label} exited {result.returncode}: {result.stdout.strip()[-200:]})")
        out[("deid", label)].add(wall, cpu)

    pipeline_store = LocalObjectStore(pipeline_data, fsync=True)
    for dataset in sorted(p.name for p in (pipeline_data / "curated" / "manifests").glob("*")):
        key = latest_manifest_key(pipeline_store, dataset)
        if key is None:
            continue
        manifest = (pipeline_data / key).read_bytes()
        _, wall, cpu = timed(lambda m=manifest: build_training_shards(pipeline_store, m, rebuild=True, work_dir=work))
        out[("shards", "all")].add(wall, cpu)
    return out


# -- the profile -------------------------------------------------------------------------------
def _category(filename: str, by: str) -> str:
    """Our module (clinical_pipelines/...) or the library a function's file belongs to."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtin"
    path = Path(filename)
    parts = path.parts
    if "clinical_pipelines" in parts:
        i = parts.index("clinical_pipelines")
        rel = parts[i + 1 :]
        if by == "module":
            return "clinical_pipelines." + ".".join(rel).removesuffix(".py")
        return "clinical_pipelines." + (rel[0].removesuffix(".py") if rel else "")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py").split(".")[0]
    if "benchmarks" in parts:
        return "benchmarks"
    return "stdlib"


def aggregate(stats: pstats.Stats, by: str) -> dict[str, float]:
    """Own time per category; a builtin's own time goes to its callers' categories (by the callers' share)."""
    totals: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, _nc, tt, _ct, callers) in raw.items():
        category = _category(filename, by)
        if category != "builtin" or not callers:
            totals[category] += tt
            continue
        shares = {caller: edge[2] for caller, edge in callers.items()}
        whole = sum(shares.values()) or 1.0
        for caller, share in shares.items():
            caller_category = _category(caller[0], by)
            totals["builtin (uncharged)" if caller_category == "builtin" else caller_category] += tt * share / whole
    return dict(totals)


def profile_headless(data: Path, keys: Path, home: Path, top: int, dump: Path | None = None) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    _, wall, _ = headless(data, keys, home)
    profiler.disable()
    if dump is not None:
        profiler.dump_stats(dump)
    stats = pstats.Stats(profiler)
    total = sum(v for v in aggregate(stats, "library").values())
    print(f"\nprofile of a second headless run on a fresh copy (cProfile, {wall:.1f} s under the profiler):")
    for by in ("library", "module"):
        rows = sorted(aggregate(stats, by).items(), key=lambda kv: -kv[1])[:top]
        print(f"  own time by {by} (builtins charged to their callers):")
        for name, seconds in rows:
            print(f"    {name:<58} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
    print(f"  top {top} functions by own time:")
    stream_stats = pstats.Stats(profiler, stream=sys.stdout)
    stream_stats.sort_stats("tottime").print_stats(top)
    print(f"  top {top} functions by cumulative time:")
    stream_stats.sort_stats("cumulative").print_stats(top)


# -- the report --------------------------------------------------------------------------------
def rate(n: float, seconds: float) -> str:
    return f"{n / seconds:8.1f}" if seconds > 0 else "       -"


def print_table(landing: Landing, pipeline: dict[tuple[str, str], Timing], engines: dict[tuple[str, str], Timing],
                total_wall: float, total_cpu: float) -> None:  # fmt: skip
    def size(modality: str) -> tuple[int, int]:
        if modality in landing.files:
            return landing.files[modality], landing.bytes[modality]
        return landing.total_files, landing.total_bytes

    header = (
        f"{'stage':<9}{'modality':<34}{'files':>6}{'MB':>7} | {'wall s':>7}{'cpu s':>7}{'files/s':>9}{'MB/s':>8}"
        f" | {'engine wall':>11}{'cpu s':>7}{'files/s':>9}{'MB/s':>8} | {'pipeline/engine':>15}"
    )
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, str]] = []
    for key in [*pipeline, *engines]:
        if key not in rows:
            rows.append(key)
    order = {"ingest": 0, "validate": 1, "gate": 2, "deid": 3, "curate": 4, "shards": 5}
    rows.sort(key=lambda k: (order.get(k[0], 9), k[1]))
    staged = 0.0
    for stage, modality in rows:
        base = modality.split(",")[0] if modality.split(",")[0] in landing.files else "all"
        if stage == "shards" or stage == "curate":
            base = "all"
        n, nbytes = size(base)
        if stage in ("curate", "shards"):
            n = landing.total_files
        p, e = pipeline.get((stage, modality)), engines.get((stage, modality))
        left = f"{p.wall:7.2f}{p.cpu:7.2f}{rate(n, p.wall)}{rate(nbytes / 1e6, p.wall)}" if p else " " * 31
        right = f"{e.wall:11.2f}{e.cpu:7.2f}{rate(n, e.wall)}{rate(nbytes / 1e6, e.wall)}" if e else " " * 35
        ratio = f"{e.wall / p.wall:14.2f}x" if p and e and p.wall > 0 else ""
        print(f"{stage:<9}{modality:<34}{n:>6}{nbytes / 1e6:>7.0f} | {left} | {right} | {ratio}")
        if p:
            staged += p.wall
    print("-" * len(header))
    print(
        f"{'pipeline':<9}{'total (process_landing)':<34}{landing.total_files:>6}{landing.total_bytes / 1e6:>7.0f} | "
        f"{total_wall:7.2f}{total_cpu:7.2f}{rate(landing.total_files, total_wall)}"
        f"{rate(landing.total_bytes / 1e6, total_wall)} |"
    )
    print(f"{'':<9}{'outside the engines (Dagster, I/O)':<34}{'':>13} | {total_wall - staged:7.2f}")
    deid2 = engines.get(("deid", "dicom"))
    if deid2:
        ours = landing.total_files / total_wall
        theirs = landing.files["dicom"] / deid2.wall
        print(
            f"\nwhole pipeline {ours:.1f} files/s vs `deid dicom --workers 2` {theirs:.1f} files/s on the same "
            f"DICOM files: {ours / theirs:.2f}x (target >= 0.33)"
        )


def scaled_child(work: Path, out: Path) -> None:
    """One scale's run, in its own process: process_landing over ``work/pipeline`` with the stage clock; the
    timings, totals and peak RSS written to ``out`` as JSON."""
    import json

    with StageClock() as clock:
        summary, wall, cpu = headless(work / "pipeline", work / "keys", work / "dagster")
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    out.write_text(json.dumps({
        "wall": wall, "cpu": cpu,
        "promoted": sum(d.promoted for d in summary.drops), "drops": len(summary.drops),
        "stages": {f"{stage}|{modality}": t.wall for (stage, modality), t in clock.timings.items()},
        "rss_mib": me.ru_maxrss / 1024, "largest_child_rss_mib": kids.ru_maxrss / 1024,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--slices", type=int, default=40, help="slices per series (one series per patient)")
    parser.add_argument("--notes", type=int, default=2, help="notes per patient")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir in .)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled second run")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--profile-out", type=Path, default=None, help="also dump the cProfile stats there")
    parser.add_argument("--scale", default=None, help="comma-separated factors of the base landing, e.g. 1,4,16")
    parser.add_argument("--pending", type=int, default=1000, help="with --scale: drops pending for the sensor tick")
    parser.add_argument("--headless-json", type=Path, default=None, help=argparse.SUPPRESS)  # one scale's child run
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if args.headless_json is not None:
        scaled_child(args.workdir, args.headless_json)
        return
    if args.scale:
        from scale import run_scales  # benchmarks/ is on the path

        run_scales(args, [int(f) for f in args.scale.split(",")])
        return
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.workdir or ".")).resolve()
    keys = work / "keys"
    try:
        t0 = time.perf_counter()
        landing = make_landing(work / "pipeline", work / "plain", args)
        for copy in ("engines", "profiled"):
            shutil.copytree(work / "pipeline" / "landing", work / copy / "landing")
        print(
            f"landing: {len(landing.drops)} drops, {landing.total_files} files "
            f"({dict(landing.files)}), {landing.total_bytes / 1e6:.0f} MB, "
            f"generated in {time.perf_counter() - t0:.1f} s"
        )
        # Keys first (as `clinical-pipelines run` checks them before any run), outside the timing.
        from clinical_pipelines.deid.secret import load_deid_key

        settings_for(work / "pipeline", keys).keyring()
        load_deid_key(keys, create=True)

        with StageClock() as clock:
            summary, total_wall, total_cpu = headless(work / "pipeline", keys, work / "dagster-1")
        failed = [d.partition_key for d in summary.drops if not d.promoted]
        print(
            f"headless run: {len(summary.drops)} drops, {sum(d.files for d in summary.drops)} files accepted, "
            f"{len(failed)} not promoted {failed}; curated: "
            f"{[(c.dataset, c.objects, c.shards) for c in (summary.curated.datasets if summary.curated else [])]}"
        )
        engines = standalone(work, landing, keys, work / "pipeline")
        print("\nper stage and modality (pipeline = inside process_landing; engine = the same files standalone):")
        print_table(landing, dict(clock.timings), engines, total_wall, total_cpu)
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if not args.no_profile:
            profile_headless(work / "profiled", keys, work / "dagster-2", args.top, args.profile_out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
