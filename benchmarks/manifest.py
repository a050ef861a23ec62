"""Manifest build and verify throughput against ``sha256sum`` over the same files, measured in the same run.

    .venv/bin/python benchmarks/manifest.py [--small 100000] [--small-kb 4] [--large 1000] [--large-mb 1]
                                            [--repeat 3] [--workers N]

Writes --small objects of --small-kb KiB and --large objects of --large-mb MiB (random bytes) into a local
store's ``curated/objects`` (content-addressed, as the curated stage stores them). Then, per set:

- build: the manifest document (one row per object, sorted), its canonical JSON, its sha256, the write-once
  put; objects/s;
- baseline: ``sha256sum`` over the same files (``xargs -0``, as many files per process as fit), single process,
  output discarded (also shown: one ``sha256sum`` per CPU over equal shares, for reference);
- verify: :func:`clinical_pipelines.curate.verify.verify_manifest` (a thread pool re-hashing every object
  through the store: open, read, hash, compare size and digest).

Baseline and verify alternate --repeat times over a warm page cache; the best of each is reported as
objects/s and MB/s, with the ratio verify/baseline (target >= 0.8x).
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
from typing import Any

from clinical_pipelines.curate.canonical import canonical_bytes, sha256_hex
from clinical_pipelines.curate.manifest import SCHEMA, write_manifest
from clinical_pipelines.curate.verify import default_workers, verify_manifest
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.zones import curated_object_key


def _write_objects(root: Path, count: int, size: int, tag: str) -> list[dict[str, Any]]:
    """Random objects written straight to their content addresses (setup, not measured)."""
    rows = []
    block = os.urandom(size)
    for i in range(count):
        data = f"{tag}-{i:08d}".encode() + block[: size - 16]
        sha = hashlib.sha256(data).hexdigest()
        key = curated_object_key(sha)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append({"key": key, "sha256": sha, "size": len(data), "modality": "dicom",
                     "patient_id": f"PSN-BENCH{i % 997:011d}", "split": "train", "label": None,
                     "attributes": {"drop": "bench/d1"}})  # fmt: skip
    return rows


def _build(store: LocalObjectStore, dataset: str, rows: list[dict[str, Any]]) -> tuple[Any, float]:
    started = time.perf_counter()
    doc = {
        "schema": SCHEMA, "dataset": dataset, "version": 1, "parents": {"drops": ["bench/d1"], "previous": None},
        "spec_sha256": "0" * 64, "code_version": "bench", "deid": {"profile": "bench", "version": "1", "options": []},
        "split": {"seed": 0, "ratios": {"train": "1"}},
        "objects": sorted(rows, key=lambda r: (r["patient_id"], r["key"])),
    }  # fmt: skip
    manifest = write_manifest(store, doc)
    assert manifest.version_id == sha256_hex(canonical_bytes(doc))
    return manifest, time.perf_counter() - started


def _baseline(root: Path, rows: list[dict[str, Any]], processes: int = 1) -> float:
    listing = b"\0".join(str(root / r["key"]).encode() for r in rows)
    batch = ["-n", str(-(-len(rows) // processes))] if processes > 1 else []
    started = time.perf_counter()
    command = ["xargs", "-0", "-P", str(processes), *batch, "sha256sum"]
    subprocess.run(command, input=listing, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _report(name: str, count: int, total: int, seconds: float) -> str:
    return f"  {name:<28} {count / seconds:>10,.0f} objects/s {total / seconds / 1e6:>9,.1f} MB/s  ({seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--small-kb", type=int, default=4)
    parser.add_argument("--large", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-manifest-", dir=args.workdir or "."))
    try:
        store = LocalObjectStore(work / "data", fsync=False)
        sets = [
            ("small", args.small, args.small_kb * 1024),
            ("large", args.large, args.large_mb * 1024 * 1024),
        ]
        print(f"{os.cpu_count()} CPU(s); best of {args.repeat}")
        for name, count, size in sets:
            started = time.perf_counter()
            rows = _write_objects(store.root, count, size, name)
            total = sum(r["size"] for r in rows)
            print(f"\n{name}: {count:,} objects of {size / 1024:,.0f} KiB ({total / 1e6:,.0f} MB), "
                  f"written in {time.perf_counter() - started:.1f} s")  # fmt: skip
            manifest, build_s = _build(store, f"bench_{name}", rows)
            print(_report("build manifest", count, total, build_s) + f"  manifest {len(manifest.data) / 1e6:.1f} MB")
            _baseline(store.root, rows)  # warm the page cache for both contenders
            workers = args.workers or default_workers(size)  # what verify_manifest picks for this size
            base_best = verify_best = parallel_best = float("inf")
            cpus = os.cpu_count() or 1
            for _ in range(args.repeat):
                base_best = min(base_best, _baseline(store.root, rows))
                parallel_best = min(parallel_best, _baseline(store.root, rows, cpus))
                report = verify_manifest(store, manifest, workers=workers)
                assert report.ok, report.problems[:3]
                verify_best = min(verify_best, report.seconds)
            print(_report("baseline sha256sum", count, total, base_best))
            print(_report(f"manifest verify ({workers} thr)", count, total, verify_best))
            print(_report(f"(sha256sum x{cpus} processes)", count, total, parallel_best))
            print(f"  ratio verify / baseline: {base_best / verify_best:.2f}x (target >= 0.8x); "
                  f"vs {cpus} parallel sha256sum: {parallel_best / verify_best:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
