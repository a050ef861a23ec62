"""Training loader throughput: shards + cache against one-DICOM-per-sample, and the sequential-read floor.

    .venv/bin/python benchmarks/loader.py [--gb 2.0] [--workdir DIR] [--shard-mb 256] [--repeat 5] [--keep]

Generates >= --gb of synthetic 512x512 int16 CT/MR slices, puts them as curated objects into a
local object store with a version manifest (one split), builds the training shards, then measures in
one run, every figure on the same samples, each variant handing over every sample's pixels as an
ndarray in the process's memory:

- (a) naive: every sample is its own DICOM file, read from the store and decoded with pydicom
  (in the epoch's shuffled order, as a map-style dataset would);
- (b) cold: the shard reader with an empty cache folder (fetch from the object store, sha256 while
  writing into the cache, atomic rename; then mmap);
- (c) warm: the shard reader again, every shard already in the cache;
- (d) floor: a plain sequential read (8 MiB ``readinto``) of the same shard files in the cache.

The machine's page cache is not dropped (no root): the store's files and the cache's shards are in
RAM for every variant, so "cold" means "not yet in the shard cache", not "not yet read from disk".
Where torch sees a CUDA GPU it also trains a small CNN fed by (a) and by (c) and reports the share
of wall time the GPU was busy. The work folder is deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from clinical_pipelines.curate.splits import assign_split
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.training import ShardCache, StreamingDataset, build_training_shards, global_order
from clinical_pipelines.zones import curated_object_key

SLICE_BYTES = 512 * 512 * 2
BATCH = 32
RATIOS = {"train": "1"}


def make_version(store: LocalObjectStore, gb: float) -> dict[str, Any]:
    """Put >= ``gb`` GB of synthetic slices into the curated zone; return a manifest of them (one split)."""
    slices = int(gb * 1e9 / SLICE_BYTES) + 1
    patients = max(2, slices // 100)
    corpus = SynthCorpus(11, n_patients=patients, slices_per_series=-(-slices // patients), notes_per_patient=0)
    rows = []
    for drop in corpus.iter_drops():
        for f in drop.files:
            if f.modality != "dicom":
                continue
            patient = "PSN-" + hashlib.sha256(str(pydicom.dcmread(io.BytesIO(f.data), stop_before_pixels=True)
                                                  .PatientID).encode()).hexdigest()[:12]  # fmt: skip
            sha = hashlib.sha256(f.data).hexdigest()
            store.put_bytes(curated_object_key(sha), f.data)
            rows.append({"key": curated_object_key(sha), "sha256": sha, "size": len(f.data), "modality": "dicom",
                         "patient_id": patient, "split": assign_split(patient, RATIOS, 0), "label": None,
                         "attributes": {}})  # fmt: skip
    rows.sort(key=lambda r: (r["patient_id"], r["key"]))
    return {"schema": "clinical-pipelines.manifest/1", "dataset": "bench", "version": 1,
            "parents": {"drops": [], "previous": None}, "spec_sha256": "0" * 64, "code_version": "bench",
            "deid": {"profile": "none (synthetic)", "version": "0", "options": []},
            "split": {"seed": 0, "ratios": RATIOS}, "objects": rows}  # fmt: skip


def consume(samples: Iterator[np.ndarray]) -> tuple[int, int]:
    """Take every sample (each variant hands over an ndarray already in this process's memory); (samples, bytes)."""
    n = nbytes = 0
    for pixels in samples:
        n += 1
        nbytes += pixels.nbytes
    return n, nbytes


def naive(store: LocalObjectStore, keys: list[str]) -> Iterator[np.ndarray]:
    """One object per sample: read it from the store and decode it with pydicom."""
    for key in keys:
        with store.open_read(key) as fh:
            yield pydicom.dcmread(io.BytesIO(fh.read())).pixel_array


def reader(store: LocalObjectStore, index: Any, cache: Path) -> tuple[StreamingDataset, Iterator[np.ndarray]]:
    """The shard reader over the split (shuffled, default buffer), yielding pixel views."""
    ds = StreamingDataset(store, index, "train", ShardCache(cache), seed=0)
    return ds, (s["pixels"] for s in ds)


def floor(paths: list[Path]) -> int:
    """Sequential read of ``paths`` into one reused 8 MiB buffer; returns bytes read."""
    buf = bytearray(8 << 20)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                total += n
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def best_of(repeat: int, fn: Callable[[], tuple[int, int]]) -> tuple[float, int, int]:
    """The fastest of ``repeat`` runs of ``fn`` as (seconds, samples, bytes): the machine is shared and noisy."""
    runs = [timed(fn) for _ in range(max(1, repeat))]
    seconds, (n, nbytes) = min(runs, key=lambda r: r[0])
    return seconds, n, nbytes


def gpu_utilisation(batches: Callable[[], Iterator[np.ndarray]], steps: int) -> float | None:
    """Share of wall time a CUDA GPU is busy training a small CNN on ``batches``; None without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 5, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 5, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 2),
    ).to(device)  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    busy = 0.0
    started = time.perf_counter()
    for i, batch in enumerate(batches()):
        if i == steps:
            break
        x = torch.from_numpy(batch).to(device, non_blocking=True).float().unsqueeze(1) / 1000
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        end.record()
        end.synchronize()
        busy += begin.elapsed_time(end) / 1000
    return busy / (time.perf_counter() - started)


def batched(samples: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    buf = np.empty((BATCH, 512, 512), dtype=np.int16)
    for i, pixels in enumerate(samples):
        buf[i % BATCH] = pixels
        if i % BATCH == BATCH - 1:
            yield buf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=Path(".bench-loader"))
    parser.add_argument("--shard-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs of each variant")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = args.workdir.absolute()
    if work.exists():
        raise SystemExit(f"{work} exists: give a fresh --workdir")
    try:
        store = LocalObjectStore(work / "store", fsync=False)
        t_gen, manifest = timed(lambda: make_version(store, args.gb))
        n_objects = len(manifest["objects"])
        data_bytes = sum(r["size"] for r in manifest["objects"])
        print(f"data: {n_objects} DICOM objects, {data_bytes / 1e9:.2f} GB ({t_gen:.0f} s to generate)")
        t_build, report = timed(lambda: build_training_shards(store, manifest, shard_target_bytes=args.shard_mb << 20,
                                                              work_dir=work))  # fmt: skip
        index = report.index
        shards = index.split_shards("train")
        shard_bytes = sum(s.size for s in shards)
        print(f"build: {len(shards)} shards of <= {args.shard_mb} MiB, {shard_bytes / 1e9:.2f} GB in {t_build:.1f} s "
              f"({report.samples / t_build:.0f} samples/s)")  # fmt: skip

        results: dict[str, tuple[float, int, int]] = {}
        # (a) naive, in the same shuffled epoch order the reader uses
        order = global_order([len(s.samples) for s in shards], 0, 0)
        by_key = {r["sha256"]: r["key"] for r in manifest["objects"]}
        flat = [sample.key for shard in shards for sample in shard.samples]
        keys = [by_key[flat[i]] for i in order.tolist()]
        results["a naive (pydicom per file)"] = best_of(args.repeat, lambda: consume(naive(store, keys)))
        # (b) cold: a fresh cache folder each time; (c) warm: the last cold run's cache
        cache = work / "cache"
        metrics: dict[str, Any] = {}

        def cold() -> tuple[int, int]:
            shutil.rmtree(cache, ignore_errors=True)
            ds, it = reader(store, index, cache)
            metrics["cold"] = ds.metrics
            return consume(it)

        def warm() -> tuple[int, int]:
            ds, it = reader(store, index, cache)
            metrics["warm"] = ds.metrics
            return consume(it)

        results["b shard reader, cold cache"] = best_of(args.repeat, cold)
        results["c shard reader, warm cache"] = best_of(args.repeat, warm)
        # (d) floor
        paths = [ShardCache(cache).shard_path(s.sha256) for s in shards]
        results["d sequential read of the shards"] = best_of(args.repeat, lambda: (n_objects, floor(paths)))

        print(f"\n{'variant':36} {'seconds':>8} {'samples/s':>10} {'MB/s':>8}")
        rate = {}
        for name, (t, n, nbytes) in results.items():
            rate[name[0]] = n / t
            print(f"{name:36} {t:8.2f} {n / t:10.0f} {nbytes / 1e6 / t:8.0f}")
        print("\n(MB/s: decoded pixel bytes for a-c, shard bytes for d; the shards are "
              f"{shard_bytes / (n_objects * SLICE_BYTES):.3f}x the pixel bytes)")  # fmt: skip
        print(f"warm / naive = {rate['c'] / rate['a']:.1f}x (target >= 10)")
        print(f"warm / floor = {rate['c'] / rate['d']:.2f}x (target >= 0.7)")
        print(f"cold / warm  = {rate['b'] / rate['c']:.2f}x (target >= 0.5)")
        print("\nreader metrics, cold (last run):", json.dumps(metrics["cold"].as_dict()))
        print("reader metrics, warm (last run):", json.dumps(metrics["warm"].as_dict()))

        steps = min(60, n_objects // BATCH)
        util_naive = gpu_utilisation(lambda: batched(naive(store, keys)), steps)
        if util_naive is None:
            print("\nGPU utilisation: no CUDA GPU here (not measured)")
        else:
            util_warm = gpu_utilisation(lambda: batched(reader(store, index, cache)[1]), steps)
            print(f"\nGPU busy share, small CNN, {steps} x {BATCH}: naive {util_naive:.1%}, warm {util_warm:.1%}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            print(f"removed {work}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
