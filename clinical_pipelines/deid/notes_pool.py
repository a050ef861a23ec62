"""Warm worker processes that de-identify and re-scan notes for the pipeline's de-identified stage.

The stage keeps every read, write, quarantine and record in its own process; a worker gets note texts and
returns, per note, the de-identified bytes, how many identifiers were searched for, the residual findings
and the pseudonymous patient ids: what :func:`judge_notes` computes, which the stage also runs inline for
small drops, so an output is byte for byte the same either way. Each worker loads the note engine (spaCy
and the recognizers) once and keeps it across drops: a pool lives as long as its process.

The pool and its registry are :mod:`clinical_pipelines.warm_pool`'s (forkserver workers, one pool per purpose).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clinical_pipelines.deid.findings import note_findings, note_identifiers
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.warm_pool import WarmPool, is_warm, warm

if TYPE_CHECKING:
    from clinical_pipelines.deid.notes import NoteDeidentifier


@dataclass(frozen=True)
class NoteOutcome:
    """One note's result, or the type of the exception the engine raised on it (never its message)."""

    out: bytes = b""
    searched: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    patients: tuple[str, ...] = ()
    error: str | None = None


def judge_notes(engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, texts: list[str]) -> list[NoteOutcome]:
    """De-identify ``texts`` as one batch, re-analyse the outputs, and judge each against its original.

    Every output is computed before any is returned. When the batch fails, each note is tried alone, so
    one note the engine fails on never takes the others with it: its outcome carries the exception's type.
    """
    try:
        return _judge(engine, pseudonymizer, texts)
    except Exception as exc:  # the type only: a message may quote the note
        if len(texts) == 1:
            return [NoteOutcome(error=type(exc).__name__)]
    outcomes = []
    for text in texts:
        try:
            outcomes.extend(_judge(engine, pseudonymizer, [text]))
        except Exception as exc:  # the type only: a message may quote the note
            outcomes.append(NoteOutcome(error=type(exc).__name__))
    return outcomes


def _judge(engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, texts: list[str]) -> list[NoteOutcome]:
    results = engine.deidentify_many(texts)
    rereads = engine.analyze_many([r.text for r in results])
    outcomes = []
    for text, result, reread in zip(texts, results, rereads, strict=True):
        searched = sum(len(v) for v in note_identifiers(text, result).values())
        mrn = next((text[s:e] for kind, s, e in result.spans if kind == "MRN"), None)
        patients = (pseudonymizer.patient_id(mrn),) if mrn else ()
        outcomes.append(NoteOutcome(result.text.encode("utf-8"), searched, note_findings(text, result, reread),
                                    patients))  # fmt: skip
    return outcomes


_worker: tuple[NoteDeidentifier, Pseudonymizer] | None = None


def _init(key: bytes, max_shift_days: int, score_threshold: float, spacy_model: str | None) -> None:
    global _worker
    from clinical_pipelines.deid.batch import skip_unused_heavy_imports

    skip_unused_heavy_imports()  # torch/transformers: seconds per process, never used here
    from clinical_pipelines.deid.notes import NoteDeidentifier

    pseudonymizer = Pseudonymizer(key, max_shift_days=max_shift_days)
    engine = NoteDeidentifier(pseudonymizer, score_threshold=score_threshold, spacy_model=spacy_model)
    _ = engine.analyzer  # spaCy and the recognizers load once, when the worker starts
    _worker = (engine, pseudonymizer)


def _task(texts: list[str]) -> list[NoteOutcome]:
    assert _worker is not None
    return judge_notes(_worker[0], _worker[1], texts)


class NotesPool(WarmPool):
    """``workers`` warm processes judging notes as :func:`judge_notes` does with ``engine`` (its settings) and
    this pseudonymizer's secret."""

    def __init__(self, engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, workers: int) -> None:
        super().__init__(workers, _init, (*pseudonymizer.worker_copy_args(), *engine_settings(engine)))

    def map(self, batches: Iterable[list[str]]) -> Iterator[list[NoteOutcome]]:
        """Each batch's outcomes, in order; at most ``2 * workers`` batches in flight (memory stays bounded).

        ``batches`` is consumed lazily, so the caller may read each batch just before it is needed.
        """
        return self.imap(_task, batches)


def engine_settings(engine: NoteDeidentifier) -> tuple[float, str | None]:
    """What a worker needs to build an engine that gives ``engine``'s results."""
    return engine.score_threshold, engine._spacy_model


def warm_notes_pool(engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, workers: int) -> NotesPool:
    """The process's notes pool for ``engine``'s settings, this pseudonymizer's secret and this size, started on
    first use and kept until exit; keyed by a hash of the secret, never the secret itself. A broken pool, or
    the pool of another secret or settings, is replaced (at most one per process)."""
    return warm("deid-notes", _ident(engine, pseudonymizer, workers), lambda: NotesPool(engine, pseudonymizer, workers))


def notes_pool_is_warm(engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, workers: int) -> bool:
    """Whether :func:`warm_notes_pool` would return a pool already started (nothing is started here)."""
    return is_warm("deid-notes", _ident(engine, pseudonymizer, workers))


def _ident(engine: NoteDeidentifier, pseudonymizer: Pseudonymizer, workers: int) -> tuple[object, ...]:
    key, max_shift_days = pseudonymizer.worker_copy_args()
    return (hashlib.sha256(b"clinical-pipelines/notes-pool\0" + key).digest(), max_shift_days,
            engine_settings(engine), workers)  # fmt: skip
