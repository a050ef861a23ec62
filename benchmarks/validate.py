"""DICOM validation throughput against plain header reads, measured in the same run.

    .venv/bin/python benchmarks/validate.py [--files 1000] [--per-drop 250] [--repeat 3]

Generates --files synthetic 512x512 CT/MR slices, writes them to landing in drops of
--per-drop files and ingests them (encrypted raw zone). Then times, on the same files:

- baseline: ``pydicom.dcmread(path, stop_before_pixels=True)`` over the landing files;
- validate: the real validated stage per drop — decrypt each raw object, parse it with pydicom
  (file meta, transfer syntax, pixel-length check, truncation check), build the header frame and
  run the Great Expectations DICOM suite, write the validated record.

Prints files/s for each and the ratio (target >= 0.5x the baseline).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pydicom

from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.storage.keys import local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.validate.engine import DropValidator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--per-drop", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-validate-", dir=args.workdir or "."))
    try:
        store = LocalObjectStore(work / "data", fsync=False)
        keyring = local_keyring(work / "keys")
        patients = max(1, args.files // 50)
        corpus = SynthCorpus(3, n_patients=patients, slices_per_series=-(-args.files // patients), notes_per_patient=0)
        dicoms = [f for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"][: args.files]
        drops = []
        for start in range(0, len(dicoms), args.per_drop):
            drop_id = f"bench-{start // args.per_drop:03d}"
            write_drop(
                store,
                "bench",
                drop_id,
                {f"dicom/{i:05d}.dcm": f.data for i, f in enumerate(dicoms[start : start + args.per_drop])},
            )
            DropIngestor(store, keyring).ingest("bench", drop_id)
            drops.append(drop_id)
        paths = sorted((work / "data" / "landing").rglob("*.dcm"))
        print(f"{len(paths)} DICOM files in {len(drops)} drops ({sum(p.stat().st_size for p in paths) / 1e6:.0f} MB)")
        validator = DropValidator(store, keyring)
        validator.validate("bench", drops[0], "dicom")  # warm-up: imports (GX ~3 s) and page cache

        def baseline() -> float:
            started = time.perf_counter()
            for path in paths:
                pydicom.dcmread(path, stop_before_pixels=True)
            return time.perf_counter() - started

        def validate() -> float:
            started = time.perf_counter()
            for drop_id in drops:
                report = validator.validate("bench", drop_id, "dicom")
                assert report.passed and len(report.passed_items) == report.items_total, report.critical_failures
            return time.perf_counter() - started

        times: dict[str, list[float]] = {
            "baseline: dcmread(stop_before_pixels=True)": [],
            "validated stage + GX suite": [],
        }
        for _ in range(args.repeat):
            for name, fn in zip(times, (baseline, validate), strict=True):
                times[name].append(fn())
        rates = {name: len(paths) / min(t) for name, t in times.items()}
        print(f"results, best of {args.repeat} interleaved rounds:")
        for name, rate in rates.items():
            print(f"  {name:<44} {rate:8.0f} files/s")
        base, ours = rates.values()
        print(f"ratio validated / baseline: {ours / base:.2f}x (target >= 0.5)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
