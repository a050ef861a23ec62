"""Small synthetic corpora for tests, and a helper to look for planted identifiers in bytes."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.synth import SynthCorpus, SynthDrop
from clinical_pipelines.synth.landing import put_drop


@functools.cache
def small_corpus(seed: int = 11) -> tuple[list[SynthDrop], tuple[str, ...]]:
    """Drops of a small corpus (64x64 pixels) and its canary values (long enough to grep safely)."""
    corpus = SynthCorpus(seed, n_patients=3, slices_per_series=2, rows=64, columns=64)
    drops = list(corpus.iter_drops())
    # Dates are shifted, not removed, so a shifted date can equal another real date by chance;
    # date shifting is checked exactly in the de-identification tests instead.
    canaries = tuple(
        sorted({c.value for c in corpus.canaries() if len(c.value) >= 6 and c.kind not in ("date", "birth_date")})
    )
    return drops, canaries


def put_drops(store: ObjectStore, drops: Iterable[SynthDrop]) -> None:
    """Upload drops to landing the way a source would (files, then drop.json)."""
    for drop in drops:
        put_drop(store, drop)


def find_planted(blobs: Iterable[tuple[str, bytes]], planted: Iterable[str]) -> list[tuple[str, str]]:
    """(where, value) for every planted value found in any blob (UTF-8 and UTF-16 forms)."""
    values = [(v, v.encode(), v.encode("utf-16-le")) for v in planted]
    hits = []
    for where, blob in blobs:
        for value, utf8, utf16 in values:
            if utf8 in blob or utf16 in blob:
                hits.append((where, value))
    return hits


def files_under(root: Path, *, exclude: Iterable[Path] = ()) -> Iterable[tuple[str, bytes]]:
    """(path, bytes) of every file below ``root``, skipping the ``exclude`` subtrees."""
    skipped = [p.resolve() for p in exclude]
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path.resolve().is_relative_to(s) for s in skipped):
            yield str(path), path.read_bytes()
