"""Folder-to-folder de-identification for the standalone CLI: many files, several processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.pseudonyms import Pseudonymizer


@dataclass
class BatchSummary:
    """What a batch did: counts, reasons and speed; never a file name or value."""

    files: int = 0
    written: int = 0
    bytes_in: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        """Throughput over the whole batch."""
        return self.files / self.seconds if self.seconds else 0.0


_worker: DicomDeidentifier | None = None


def _init_worker(key: bytes, options: tuple[str, ...]) -> None:
    global _worker
    _worker = DicomDeidentifier(Pseudonymizer(key), DicomDeidPolicy(options=options))


def _deid_one(job: tuple[str, str]) -> tuple[int, str | None]:
    """De-identify one file (in a worker); returns (bytes read, rejection reason or None)."""
    source, target = job
    assert _worker is not None
    data = Path(source).read_bytes()
    try:
        out, _ = _worker.deidentify_bytes(data)
    except DeidRejected as rejected:
        return len(data), rejected.reason
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{target}.tmp-{os.getpid()}")
    tmp.write_bytes(out)
    tmp.replace(target)
    return len(data), None


def _jobs(in_dir: Path, out_dir: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(p for p in in_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        yield str(path), str(out_dir / path.relative_to(in_dir))


def deidentify_dicom_folder(
    in_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    options: tuple[str, ...],
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """De-identify every file under ``in_dir`` into the same relative path under ``out_dir``.

    Files that cannot be de-identified safely are not written; the summary counts them by reason.
    With ``workers`` > 1 the files are spread over that many processes.
    """
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ValueError("the output folder must not lie inside the input folder")
    jobs = list(_jobs(in_dir, out_dir))
    summary = BatchSummary(files=len(jobs))
    started = time.perf_counter()
    if workers <= 1:
        _init_worker(key, options)
        results: Iterator[tuple[int, str | None]] = map(_deid_one, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(key, options))
        results = pool.map(_deid_one, jobs, chunksize=16)
    try:
        for read, reason in results:
            summary.bytes_in += read
            if reason is None:
                summary.written += 1
            else:
                summary.rejected[reason] = summary.rejected.get(reason, 0) + 1
            if progress is not None:
                progress(1)
    finally:
        if pool is not None:
            pool.shutdown()
    summary.seconds = time.perf_counter() - started
    return summary
