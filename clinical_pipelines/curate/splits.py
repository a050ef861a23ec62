"""Deterministic patient-level splits: a patient's split depends only on (seed, pseudonymous id, ratios)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fractions import Fraction


def _unit_interval(seed: int, patient_id: str) -> Fraction:
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    return Fraction(int.from_bytes(digest[:8], "big"), 1 << 64)


def assign_split(patient_id: str, ratios: Mapping[str, float | str | Fraction], seed: int = 0) -> str:
    """The split ``patient_id`` belongs to under ``ratios`` (e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``).

    Promises: the same (seed, patient id, ratios) always give the same split, whatever else is in the
    dataset or in which order patients are seen, so no patient can land in two splits; adding patients
    never moves existing ones. Ratios are taken as exact decimals (no float drift), must be positive and
    sum to 1; splits are considered in sorted name order.
    """
    if not ratios:
        raise ValueError("split ratios are empty")
    exact = {name: Fraction(str(value)) for name, value in ratios.items()}
    if any(v <= 0 for v in exact.values()):
        raise ValueError("split ratios must be positive")
    if sum(exact.values()) != 1:
        raise ValueError(f"split ratios must sum to 1, not {float(sum(exact.values()))}")
    point = _unit_interval(seed, patient_id)
    upper = Fraction(0)
    names = sorted(exact)
    for name in names:
        upper += exact[name]
        if point < upper:
            return name
    return names[-1]
