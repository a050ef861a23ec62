"""Ingest throughput (local backend) against a read + sha256 + copy baseline, measured in the same run.

    .venv/bin/python benchmarks/ingest.py [--gb 1.0] [--workdir DIR] [--repeat 2]

Generates >= --gb of synthetic DICOM drops (512x512 int16 slices), then times,
on the same files, with the page cache warm for all of them:

- baseline: for every file, read it in 8 MiB chunks, sha256 it and write a copy
  (a plain Python read/hash/copy loop, once without and once with an fsync of each copy;
  also `sha256sum` + `cp` through the shell);
- ingest: the real engine (verify against drop.json, sniff, AES-256-GCM envelope
  encryption, content-addressed write-once publish), 1 and N worker threads,
  with and without fsync of each object.

Prints MB/s and, like for like, the ratio of each ingest variant to the Python baseline
(ingest without fsync against the loop without fsync, ingest with fsync against the loop that
fsyncs each copy). ``--profile`` adds cProfile's top costs of one ingest (1 worker, no fsync).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage.keys import local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth import SynthCorpus

SLICE_BYTES = 512 * 512 * 2


def make_landing(root: Path, gb: float) -> tuple[list[tuple[str, str]], int]:
    """Write drops totalling >= ``gb`` GB into root/landing; returns drop ids and bytes."""
    slices = max(1, int(gb * 1e9 / SLICE_BYTES) + 1)
    patients = max(2, slices // 100)
    corpus = SynthCorpus(42, n_patients=patients, slices_per_series=-(-slices // patients), notes_per_patient=0)
    store = LocalObjectStore(root, fsync=False)
    drops, total = [], 0
    for drop in corpus.iter_drops():
        write_drop(store, drop.source, drop.drop_id, {f.path: f.data for f in drop.files})
        drops.append((drop.source, drop.drop_id))
        total += sum(len(f.data) for f in drop.files)
    return drops, total


def landing_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "landing").rglob("*") if p.is_file() and p.name != "drop.json")


def baseline_python(files: list[Path], out: Path, *, fsync: bool = False) -> float:
    """Read, hash and copy every file (fsync each copy if asked); seconds taken."""
    out.mkdir(parents=True)
    started = time.perf_counter()
    for i, path in enumerate(files):
        digest = hashlib.sha256()
        with open(path, "rb") as src, open(out / f"{i:06d}", "wb") as dst:
            while chunk := src.read(8 << 20):
                digest.update(chunk)
                dst.write(chunk)
            if fsync:
                dst.flush()
                os.fsync(dst.fileno())
        digest.hexdigest()
    return time.perf_counter() - started


def baseline_shell(files: list[Path], out: Path) -> float:
    """`sha256sum` over all files, then `cp` of all files (batched by xargs); seconds taken."""
    out.mkdir(parents=True)
    listing = out.parent / "files.txt"
    listing.write_text("\n".join(map(str, files)) + "\n")
    started = time.perf_counter()
    subprocess.run(
        f"xargs -a {listing} sha256sum > /dev/null && xargs -a {listing} cp --backup=numbered -t {out}",
        shell=True,
        check=True,
    )
    return time.perf_counter() - started


def ingest(root: Path, drops: list[tuple[str, str]], keys: Path, *, workers: int, fsync: bool) -> float:
    """Ingest every drop into a fresh raw zone; seconds taken."""
    shutil.rmtree(root / "raw", ignore_errors=True)
    shutil.rmtree(root / "quarantine", ignore_errors=True)
    ingestor = DropIngestor(LocalObjectStore(root, fsync=fsync), local_keyring(keys), workers=workers)
    started = time.perf_counter()
    for source, drop_id in drops:
        report = ingestor.ingest(source, drop_id)
        assert not report.quarantined, report.quarantined_by_reason()
    return time.perf_counter() - started


def profile_ingest(root: Path, drops: list[tuple[str, str]], keys: Path, top: int = 15) -> None:
    """cProfile of one ingest (1 worker, no fsync): the top costs by own time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    ingest(root, drops, keys, workers=1, fsync=False)
    profiler.disable()
    print(f"profile of one ingest (1 worker, no fsync; the raw zone's removal beforehand included), top {top}:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir in .)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N interleaved rounds for every variant")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top costs of one ingest")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.workdir or "."))
    try:
        root = work / "data"
        t0 = time.perf_counter()
        drops, total = make_landing(root, args.gb)
        files = landing_files(root)
        print(
            f"landing: {len(drops)} drops, {len(files)} files, {total / 1e6:.0f} MB (generated in "
            f"{time.perf_counter() - t0:.1f} s)"
        )
        for path in files:  # warm the page cache for every variant alike
            path.read_bytes()

        variants = {
            "baseline: python read+sha256+copy": lambda: baseline_python(files, work / "copy"),
            "baseline: python read+sha256+copy, fsync": lambda: baseline_python(files, work / "copy", fsync=True),
            "baseline: sha256sum + cp": lambda: baseline_shell(files, work / "copy"),
            "ingest, 1 worker, fsync": lambda: ingest(root, drops, work / "keys", workers=1, fsync=True),
            f"ingest, {args.workers} workers, fsync (default)": lambda: ingest(
                root, drops, work / "keys", workers=args.workers, fsync=True
            ),
            "ingest, 1 worker, no fsync": lambda: ingest(root, drops, work / "keys", workers=1, fsync=False),
            f"ingest, {args.workers} workers, no fsync": lambda: ingest(
                root, drops, work / "keys", workers=args.workers, fsync=False
            ),
        }
        # Rounds interleave the variants, and every timed run starts with no dirty pages
        # left by the previous one (os.sync), so none pays for another's write-back.
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, run in variants.items():
                shutil.rmtree(work / "copy", ignore_errors=True)
                os.sync()
                times[name].append(run())
        shutil.rmtree(work / "copy", ignore_errors=True)
        print(f"results, best of {args.repeat} interleaved rounds (MB = 10^6 bytes):")
        best = {name: min(t) for name, t in times.items()}
        for name, seconds in best.items():
            print(f"  {name:<44} {total / 1e6 / seconds:8.1f} MB/s  ({seconds:.2f} s)")
        base = best["baseline: python read+sha256+copy"]
        base_fsync = best["baseline: python read+sha256+copy, fsync"]
        print("like-for-like ratio to the python baseline (target >= 0.7):")
        for name, seconds in best.items():
            if name.startswith("ingest"):
                fsynced = "no fsync" not in name
                against = "loop with fsync" if fsynced else "loop without fsync"
                print(f"  {name:<44} {(base_fsync if fsynced else base) / seconds:5.2f}x  (vs the {against})")
        if args.profile:
            profile_ingest(root, drops, work / "keys")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
