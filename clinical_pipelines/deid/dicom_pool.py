"""Warm worker processes that de-identify and scan DICOM bytes for the pipeline's de-identified stage.

The stage keeps every read, write, quarantine and record in its own process; only the CPU-bound part
(parse, apply the profile, write the output, search it) runs here, on bytes in and bytes out. The
re-analysis of the output's text values stays with the stage, whose analyzer is loaded anyway. Each worker
builds its engines once (the same secret and policy as the stage's own, so an output is byte for byte
what the stage computes inline) and keeps them across drops: a pool lives as long as its process.

The pool and its registry are :mod:`clinical_pipelines.warm_pool`'s (forkserver workers, one pool per purpose).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy, DicomDeidReport
from clinical_pipelines.deid.findings import DicomFindings
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.warm_pool import WarmPool, chunked, is_warm, warm

if TYPE_CHECKING:
    from collections import Counter

#: Files sent to a worker at once: enough to amortise a round trip, few enough to keep memory small.
CHUNK_FILES = 8


@dataclass(frozen=True)
class DicomOutcome:
    """One input's result: an output with its report and findings, or why it was refused.

    ``refused`` is ``(reason, detail)``; a detail never quotes a value from the file.
    """

    out: bytes = b""
    report: DicomDeidReport | None = None
    hits: Counter[str] | None = None
    identifiers_searched: int = 0
    refused: tuple[str, str] | None = None
    error: str | None = None  # an unexpected exception's type name
    texts: tuple[str, ...] = ()  # text values still to re-analyse (from a worker, which has no analyzer)


_findings: DicomFindings | None = None


def _init(key: bytes, max_shift_days: int, policy: DicomDeidPolicy) -> None:
    global _findings
    from clinical_pipelines.deid.batch import skip_unused_heavy_imports

    skip_unused_heavy_imports()  # torch/transformers: seconds per process, never used here
    # No analyzer here: the text values go back to the stage, whose analyzer (loaded once, for notes too)
    # re-analyses each distinct value; a worker never loads Presidio or spaCy.
    _findings = DicomFindings(DicomDeidentifier(Pseudonymizer(key, max_shift_days=max_shift_days), policy), None)


def deidentify_one(findings: DicomFindings, data: bytes, *, deferred: bool = False) -> DicomOutcome:
    """De-identify and scan ``data`` with ``findings``; refusals and unexpected errors become outcomes.

    ``deferred``: leave the re-analysis to the caller (:meth:`DicomFindings.reanalysed` on ``texts``).
    """
    before = findings.identifiers_searched
    try:
        if deferred:
            out, report, hits, texts = findings.deidentify_deferred(data)
        else:
            (out, report, hits), texts = findings.deidentify(data), ()
    except DeidRejected as rejected:
        return DicomOutcome(refused=(rejected.reason, rejected.detail))
    except Exception as exc:  # never carries a value: the type only
        return DicomOutcome(error=type(exc).__name__)
    return DicomOutcome(out, report, hits, findings.identifiers_searched - before, texts=texts)


def _chunk(items: list[bytes]) -> list[DicomOutcome]:
    assert _findings is not None
    return [deidentify_one(_findings, data, deferred=True) for data in items]


class DicomPool(WarmPool):
    """``workers`` warm processes de-identifying DICOM as ``DicomDeidentifier(pseudonymizer, policy)`` does."""

    def __init__(self, pseudonymizer: Pseudonymizer, policy: DicomDeidPolicy, workers: int) -> None:
        super().__init__(workers, _init, (*pseudonymizer.worker_copy_args(), policy))

    def map(self, items: Iterable[bytes]) -> Iterator[DicomOutcome]:
        """Outcomes of ``items``, in order; at most ``2 * workers`` chunks in flight (memory stays bounded).

        ``items`` is consumed lazily, so the caller may read each input just before it is needed.
        """
        for outcomes in self.imap(_chunk, chunked(items, CHUNK_FILES)):
            yield from outcomes


def warm_pool(pseudonymizer: Pseudonymizer, policy: DicomDeidPolicy, workers: int) -> DicomPool:
    """The process's pool for this pseudonymizer's secret, policy and size, started on first use and kept
    until exit.

    Keyed by a hash of the secret, never the secret itself. A pool whose workers died (a killed
    process) is replaced; so is the pool of another secret or policy (at most one pool per process).
    """
    return warm("deid-dicom", _ident(pseudonymizer, policy, workers), lambda: DicomPool(pseudonymizer, policy, workers))


def pool_is_warm(pseudonymizer: Pseudonymizer, policy: DicomDeidPolicy, workers: int) -> bool:
    """Whether :func:`warm_pool` would return a pool already started (nothing is started here)."""
    return is_warm("deid-dicom", _ident(pseudonymizer, policy, workers))


def _ident(pseudonymizer: Pseudonymizer, policy: DicomDeidPolicy, workers: int) -> tuple[object, ...]:
    key, max_shift_days = pseudonymizer.worker_copy_args()
    return (hashlib.sha256(b"clinical-pipelines/dicom-pool\0" + key).digest(), max_shift_days, policy, workers)
