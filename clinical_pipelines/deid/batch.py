"""Folder-to-folder de-identification for the standalone CLI: many files, several processes.

Worker processes come from a ``forkserver`` context: they never inherit the parent's threads
(a progress bar's refresher, a Dagster run's) or its locks, and each builds its engine once.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.pseudonyms import Pseudonymizer

if TYPE_CHECKING:  # imported in the workers only: Presidio and spaCy take seconds to import
    from clinical_pipelines.deid.notes import NoteDeidentifier, NoteResult


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
    _write_atomic(Path(target), out)
    return len(data), None


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(target)


def _pool(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs)


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
        pool = _pool(workers, _init_worker, (key, options))
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


@dataclass
class NotesSummary(BatchSummary):
    """A notes batch: :class:`BatchSummary` plus identifiers replaced per entity type (counts only)."""

    entities: dict[str, int] = field(default_factory=dict)


_note_worker: NoteDeidentifier | None = None


def _init_note_worker(key: bytes) -> None:
    from clinical_pipelines.deid.notes import NoteDeidentifier

    global _note_worker
    _note_worker = NoteDeidentifier(Pseudonymizer(key))
    _ = _note_worker.analyzer  # load spaCy and the recognizers once per process, not on the first batch


def _deid_notes(jobs: list[tuple[str, str]], batch_size: int) -> tuple[int, dict[str, int], dict[str, int]]:
    """De-identify a chunk of note files (in a worker); returns (bytes read, entity counts, refusals)."""
    assert _note_worker is not None
    texts, targets, read = [], [], 0
    refused: dict[str, int] = {}
    for source, target in jobs:
        data = Path(source).read_bytes()
        read += len(data)
        try:
            texts.append(data.decode("utf-8-sig"))
            targets.append(target)
        except UnicodeDecodeError:
            refused["not_utf8"] = refused.get("not_utf8", 0) + 1
    entities: dict[str, int] = {}
    for target, result in zip(targets, _note_worker.deidentify_many(texts, batch_size=batch_size), strict=True):
        _write_atomic(Path(target), result.text.encode("utf-8"))
        for kind, count in result.entity_counts.items():
            entities[kind] = entities.get(kind, 0) + count
    return read, entities, refused


def deidentify_notes_folder(
    in_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    workers: int = 1,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> NotesSummary:
    """De-identify every UTF-8 note under ``in_dir`` into the same relative path under ``out_dir``.

    Notes go to spaCy in batches of ``batch_size``; with ``workers`` > 1 the batches are spread over
    that many processes (each loads the model once). Files that are not UTF-8 are not written; the
    summary counts them by reason.
    """
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ValueError("the output folder must not lie inside the input folder")
    jobs = list(_jobs(in_dir, out_dir))
    chunks = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    summary = NotesSummary(files=len(jobs))
    started = time.perf_counter()
    if workers <= 1 or len(chunks) <= 1:
        _init_note_worker(key)
        results: Iterator[tuple[int, dict[str, int], dict[str, int]]] = (_deid_notes(c, batch_size) for c in chunks)
        pool = None
    else:
        pool = _pool(workers, _init_note_worker, (key,))
        results = pool.map(_deid_notes, chunks, [batch_size] * len(chunks))
    try:
        for chunk, (read, entities, refused) in zip(chunks, results, strict=True):
            summary.bytes_in += read
            summary.written += len(chunk) - sum(refused.values())
            for counts, into in ((entities, summary.entities), (refused, summary.rejected)):
                for kind, count in counts.items():
                    into[kind] = into.get(kind, 0) + count
            if progress is not None:
                progress(len(chunk))
    finally:
        if pool is not None:
            pool.shutdown()
    summary.seconds = time.perf_counter() - started
    return summary


def _deid_texts(texts: list[str], batch_size: int) -> list[NoteResult]:
    assert _note_worker is not None
    return _note_worker.deidentify_many(texts, batch_size=batch_size)


class NotesPool:
    """Worker processes that each hold a loaded note engine; :meth:`deidentify` spreads notes over them.

    Results are exactly what one :class:`~clinical_pipelines.deid.notes.NoteDeidentifier` with the
    same key gives, in input order. Use as a context manager; building it loads the model in every
    worker, so keep one pool for many calls.
    """

    def __init__(self, key: bytes, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool = _pool(self.workers, _init_note_worker, (key,))
        list(self._pool.map(_deid_texts, [[] for _ in range(self.workers * 2)], [1] * self.workers * 2))

    def deidentify(self, texts: list[str], batch_size: int = 32) -> list[NoteResult]:
        """De-identify ``texts`` (in order) in batches of ``batch_size`` across the workers."""
        chunks = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        return [result for chunk in self._pool.map(_deid_texts, chunks, [batch_size] * len(chunks)) for result in chunk]

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown()

    def __enter__(self) -> NotesPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
