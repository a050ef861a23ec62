"""Folder-to-folder de-identification for the standalone CLI: many files, several processes.

Each file goes through the pipeline's own checks first (:mod:`clinical_pipelines.validate.items`),
then the engine, then (by default) the pipeline's residual-PHI scan (:mod:`.findings`); a refused
file or an output with findings is counted and the batch goes on. Outputs are named by pseudonymous
ids or content hashes, never by input names, and written atomically (:mod:`.outputs`).

Worker processes come from a ``forkserver`` context: they never inherit the parent's threads
(a progress bar's refresher, a Dagster run's) or its locks, and each builds its engine once.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.findings import DicomFindings, note_findings
from clinical_pipelines.deid.outputs import OutputFolder, OutputFolderError

__all__ = ["BatchSummary", "NotesPool", "NotesSummary", "OutputFolderError", "deidentify_dicom_folder",
           "deidentify_notes_folder"]  # fmt: skip
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.validate.dicom import ParseFailure, read_whole
from clinical_pipelines.validate.items import check_dicom, check_note

if TYPE_CHECKING:  # imported in the workers only: Presidio and spaCy take seconds to import
    from clinical_pipelines.deid.notes import NoteDeidentifier, NoteResult


@dataclass
class BatchSummary:
    """What a batch did: counts, reasons and speed; files named only by their (pseudonymous) output name."""

    files: int = 0
    written: int = 0
    bytes_in: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    residual: dict[str, dict[str, int]] = field(default_factory=dict)  # output name -> findings per kind
    residual_scan: bool = True
    seconds: float = 0.0

    @property
    def files_per_s(self) -> float:
        """Throughput over the whole batch."""
        return self.files / self.seconds if self.seconds else 0.0

    def add(self, outcome: FileOutcome, mapping: dict[str, str] | None) -> None:
        """Count one file's outcome (and note where it went, when a mapping is kept)."""
        self.bytes_in += outcome.read
        if outcome.refused is not None:
            self.rejected[outcome.refused] = self.rejected.get(outcome.refused, 0) + 1
        elif outcome.findings:
            self.residual[outcome.name or ""] = dict(sorted(outcome.findings.items()))
        else:
            self.written += 1
        if mapping is not None:
            mapping[outcome.source] = outcome.name if outcome.refused is None else f"refused: {outcome.refused}"


@dataclass(frozen=True)
class FileOutcome:
    """One input file's fate: written under ``name``, refused for a reason, or held back for findings."""

    source: str  # path relative to the input folder (PHI: only ever in the encrypted mapping)
    read: int
    name: str | None = None
    refused: str | None = None
    findings: dict[str, int] = field(default_factory=dict)


DUPLICATE = "duplicate_output_name"  # two inputs de-identify to one SOP Instance UID with different bytes


@dataclass
class _Worker:
    """Per-process state: the engines, built once, and where outputs go."""

    key: bytes
    out: OutputFolder
    residual_scan: bool
    dicom: DicomDeidentifier | None = None
    findings: DicomFindings | None = None
    notes: NoteDeidentifier | None = None

    def note_engine(self) -> NoteDeidentifier:
        if self.notes is None:
            from clinical_pipelines.deid.notes import NoteDeidentifier

            self.notes = NoteDeidentifier(Pseudonymizer(self.key))
        return self.notes


_state: _Worker | None = None
# Where they are installed (the torch extra, a user's environment), spaCy's thinc imports torch and
# Presidio its optional transformers engine: seconds per process that the standalone de-identification
# never uses. Only the CLI's own de-identification processes skip them; a library caller is untouched.
UNUSED_HEAVY_MODULES = ("transformers", "torch")


def skip_unused_heavy_imports() -> None:
    """Make the optional transformers/torch imports fail fast in this process, unless already imported."""
    import sys

    for name in UNUSED_HEAVY_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _init_worker(
    key: bytes,
    options: tuple[str, ...] | None,
    out_dir: str,
    run_id: str,
    residual: bool,
    keep_time_of_day: bool = False,
) -> None:
    global _state
    if multiprocessing.parent_process() is not None:  # our own worker process; a library caller is untouched
        skip_unused_heavy_imports()
    _state = _Worker(key, OutputFolder(Path(out_dir), run_id), residual)
    if options is not None:
        policy = DicomDeidPolicy(options=options, keep_time_of_day=keep_time_of_day)
        _state.dicom = DicomDeidentifier(Pseudonymizer(key), policy)
        if residual:
            state = _state
            _state.findings = DicomFindings(_state.dicom, lambda: state.note_engine().analyze_many)
    else:
        _ = _state.note_engine().analyzer  # load spaCy and the recognizers once per process, not on the first batch


def _read(source: Path) -> bytes | None:
    try:
        return source.read_bytes()
    except OSError:  # unreadable input: refused, and the batch goes on
        return None


def _dicom_name(state: _Worker, header: dict[str, Any], out: bytes) -> str:
    """``<new SOP Instance UID>.dcm`` when the profile remaps UIDs, else ``<sha256 of the output>.dcm``."""
    assert state.dicom is not None
    sop = header.get("sop_instance_uid")
    if sop and state.dicom.profile.actions.get(_SOP_INSTANCE_UID) == "U":
        return f"{state.dicom.pseudonymizer.uid(sop)}.dcm"
    return f"{hashlib.sha256(out).hexdigest()}.dcm"


_SOP_INSTANCE_UID = 0x00080018


def _deid_one(job: tuple[str, str]) -> FileOutcome:
    """Validate, de-identify, scan and write one DICOM file (in a worker)."""
    source, relative = job
    state = _state
    assert state is not None and state.dicom is not None
    data = _read(Path(source))
    if data is None:
        return FileOutcome(relative, 0, refused="unreadable_input")
    dataset = read_whole(data)  # read once: judged as the pipeline judges it, then de-identified
    header = check_dicom(data, dataset=dataset)
    if isinstance(header, ParseFailure):
        return FileOutcome(relative, len(data), refused=header.reason)
    try:
        if state.findings is not None:
            out, _, findings = state.findings.deidentify(data, dataset=dataset)
        else:
            out, findings = state.dicom.deidentify_bytes(data, dataset=dataset)[0], Counter()
    except DeidRejected as rejected:
        return FileOutcome(relative, len(data), refused=rejected.reason)
    except Exception:  # whatever one file does, the batch goes on; the type alone could quote nothing
        return FileOutcome(relative, len(data), refused="deid_failed")
    name = _dicom_name(state, header, out)
    if findings:
        return FileOutcome(relative, len(data), name=name, findings=dict(findings))
    if not state.out.put(name, out):
        return FileOutcome(relative, len(data), refused=DUPLICATE)
    return FileOutcome(relative, len(data), name=name)


def _pool(workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> ProcessPoolExecutor:
    from clinical_pipelines.warm_pool import worker_executor

    return worker_executor(workers, initializer, initargs)


def _jobs(in_dir: Path) -> list[tuple[str, str]]:
    paths = sorted(p for p in in_dir.rglob("*") if p.is_file() and not p.is_symlink())
    return [(str(path), path.relative_to(in_dir).as_posix()) for path in paths]


def _run(
    in_dir: Path,
    out_dir: Path,
    summary: BatchSummary,
    tasks: list[Any],
    run_task: Callable[[Any], Any],
    initargs: tuple[Any, ...],
    workers: int,
    mapping: dict[str, str] | None,
    progress: Callable[[int], None] | None,
    collect: Callable[[Any], list[FileOutcome]] = lambda outcomes: outcomes,
) -> None:
    """Run ``tasks`` here or over ``workers`` processes, counting every outcome; no temporary file survives.

    ``collect`` turns what one task returned into its file outcomes (in this process).
    """
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ValueError("the output folder must not lie inside the input folder")
    out = OutputFolder(out_dir, initargs[3])
    out.create()
    started = time.perf_counter()
    pool = None
    try:
        if workers <= 1 or len(tasks) <= 1:
            _init_worker(*initargs)
            results: Iterator[Any] = map(run_task, tasks)
        else:
            pool = _pool(workers, _init_worker, initargs)
            results = pool.map(run_task, tasks)
        for result in results:
            outcomes = collect(result)
            for outcome in outcomes:
                summary.add(outcome, mapping)
            if progress is not None:
                progress(len(outcomes))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        out.sweep()
    summary.seconds = time.perf_counter() - started


def _deid_dicom_chunk(jobs: list[tuple[str, str]]) -> list[FileOutcome]:
    return [_deid_one(job) for job in jobs]


def _chunks(jobs: list[tuple[str, str]], size: int) -> list[list[tuple[str, str]]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def deidentify_dicom_folder(
    in_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    options: tuple[str, ...],
    workers: int = 1,
    residual_scan: bool = True,
    mapping: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    keep_time_of_day: bool = False,
) -> BatchSummary:
    """De-identify every file under ``in_dir`` into ``out_dir`` as ``<new SOP Instance UID>.dcm``.

    Each file is first validated as the pipeline validates it (:func:`check_dicom`); a refused file
    is counted by reason and the batch goes on. With ``residual_scan`` an output with any residual
    finding is not written; it is listed in ``summary.residual`` under its output name.
    ``keep_time_of_day`` keeps clock times (:class:`DicomDeidPolicy`: a re-identification risk). ``mapping``,
    when given, is filled with input path (relative to ``in_dir``) -> output name or refusal. Raises
    :class:`OutputFolderError` when ``out_dir`` cannot be written (nothing temporary is left).
    """
    jobs = _jobs(in_dir)
    summary = BatchSummary(files=len(jobs), residual_scan=residual_scan)
    initargs = (key, tuple(options), str(out_dir), secrets.token_hex(6), residual_scan, keep_time_of_day)
    chunk = 1 if workers <= 1 else 16
    _run(in_dir, out_dir, summary, _chunks(jobs, chunk), _deid_dicom_chunk, initargs, workers, mapping, progress)
    return summary


@dataclass
class NotesSummary(BatchSummary):
    """A notes batch: :class:`BatchSummary` plus identifiers replaced per entity type (counts only)."""

    entities: dict[str, int] = field(default_factory=dict)


def _deidentify_texts(engine: NoteDeidentifier, texts: list[str], batch_size: int) -> list[NoteResult | None]:
    """Batched de-identification; if the batch fails, note by note, so one bad note fails alone (None)."""
    try:
        return list(engine.deidentify_many(texts, batch_size=batch_size))
    except Exception:
        pass
    results: list[NoteResult | None] = []
    for text in texts:
        try:
            results.append(engine.deidentify(text))
        except Exception:
            results.append(None)
    return results


def _deid_notes(jobs: list[tuple[str, str]], batch_size: int) -> tuple[list[FileOutcome], dict[str, int]]:
    """Validate, de-identify, scan and write a chunk of notes (in a worker); returns outcomes, entity counts."""
    state = _state
    assert state is not None
    engine = state.note_engine()
    outcomes: list[FileOutcome] = []
    accepted: list[tuple[str, int, str]] = []
    for source, relative in jobs:
        data = _read(Path(source))
        if data is None:
            outcomes.append(FileOutcome(relative, 0, refused="unreadable_input"))
            continue
        judged = check_note(data)
        if isinstance(judged, ParseFailure):
            outcomes.append(FileOutcome(relative, len(data), refused=judged.reason))
        else:
            accepted.append((relative, len(data), data.decode("utf-8-sig")))
    texts = [text for _, _, text in accepted]
    results = _deidentify_texts(engine, texts, batch_size)
    done = [(a, r) for a, r in zip(accepted, results, strict=True) if r is not None]
    outcomes += [FileOutcome(a[0], a[1], refused="deid_failed") for a, r in zip(accepted, results, strict=True)
                 if r is None]  # fmt: skip
    rereads = engine.analyze_many([r.text for _, r in done], batch_size=batch_size) if state.residual_scan else None
    entities: Counter[str] = Counter()
    for index, ((relative, read, text), result) in enumerate(done):
        out = result.text.encode("utf-8")
        name = f"{hashlib.sha256(out).hexdigest()}.txt"
        findings = note_findings(text, result, rereads[index]) if rereads is not None else Counter()
        if findings:
            outcomes.append(FileOutcome(relative, read, name=name, findings=dict(findings)))
            continue
        state.out.put(name, out)  # equal names are equal bytes: a duplicate note is written once
        entities.update(result.entity_counts)
        outcomes.append(FileOutcome(relative, read, name=name))
    return outcomes, dict(entities)


def deidentify_notes_folder(
    in_dir: Path,
    out_dir: Path,
    key: bytes,
    *,
    workers: int = 1,
    batch_size: int = 32,
    residual_scan: bool = True,
    mapping: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> NotesSummary:
    """De-identify every note under ``in_dir`` into ``out_dir`` as ``<sha256 of the output>.txt``.

    Each note is first validated as the pipeline validates notes (:func:`check_note`: UTF-8, no NUL,
    not empty, 20 to 200,000 characters, few control characters); a refused note is counted by
    reason and the batch goes on, as it does when one note breaks the engine (``deid_failed``).
    Notes go to spaCy in batches of ``batch_size``; with ``workers`` > 1 the batches are spread over
    that many processes (each loads the model once). ``residual_scan`` and ``mapping`` as for
    :func:`deidentify_dicom_folder`; :class:`OutputFolderError` when ``out_dir`` cannot be written.
    """
    jobs = _jobs(in_dir)
    summary = NotesSummary(files=len(jobs), residual_scan=residual_scan)
    initargs = (key, None, str(out_dir), secrets.token_hex(6), residual_scan)

    entities = summary.entities

    def collect(result: tuple[list[FileOutcome], dict[str, int]]) -> list[FileOutcome]:
        outcomes, counts = result
        for kind, count in counts.items():
            entities[kind] = entities.get(kind, 0) + count
        return outcomes

    run_task = functools.partial(_deid_notes, batch_size=batch_size)
    _run(in_dir, out_dir, summary, _chunks(jobs, batch_size), run_task, initargs, workers, mapping, progress, collect)
    return summary


_note_worker: NoteDeidentifier | None = None


def _init_note_worker(key: bytes) -> None:
    from clinical_pipelines.deid.notes import NoteDeidentifier

    global _note_worker
    _note_worker = NoteDeidentifier(Pseudonymizer(key))
    _ = _note_worker.analyzer  # load spaCy and the recognizers once per process, not on the first batch


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
