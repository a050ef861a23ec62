"""Residual-PHI scan: what de-identification was told to remove must not be found in its output.

For each item the scan collects the original's identifying strings (the values the profile or
policy removes or replaces) and searches the de-identified bytes for them. It reports counts per
identifier kind only, never the strings themselves.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

MIN_LENGTH = 4  # shorter strings ("M", "YES", "CT") match by chance and identify nobody
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "AE", "UC", "AS"}


def _worth_searching(value: str) -> bool:
    value = value.strip()
    return len(value) >= MIN_LENGTH and not value.replace(".", "").isdigit()


def dicom_identifiers(
    data: bytes, actions: dict[int, str], *, kept: frozenset[str] = frozenset("KU")
) -> dict[str, set[str]]:
    """Identifying strings of an original instance: text values whose profile action is not in ``kept``
    (Keep, UID remap; add "C" when a text cleaner keeps the harmless part of cleaned descriptors),
    and all private text values, keyed by attribute keyword (or "private")."""
    import pydicom

    found: dict[str, set[str]] = {}
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    for element in ds.iterall():
        if element.VR not in _TEXT_VRS or element.value in (None, ""):
            continue
        action = "private" if element.tag.is_private else actions.get(int(element.tag), "K")
        if action in kept:
            continue
        values = element.value if isinstance(element.value, (list, tuple)) else [element.value]
        for value in values:
            text = str(value)
            parts = [text, *text.replace("^", " ").split()] if element.VR == "PN" else [text]
            for part in parts:
                if _worth_searching(part):
                    found.setdefault(element.keyword or "private", set()).add(part.strip())
    return found


def scan(output: bytes, identifiers: dict[str, Iterable[str]]) -> dict[str, int]:
    """Per identifier kind, how many of its strings occur in ``output`` (UTF-8 or UTF-16)."""
    hits: dict[str, int] = {}
    for kind, values in identifiers.items():
        for value in values:
            if value.encode("utf-8") in output or value.encode("utf-16-le") in output:
                hits[kind] = hits.get(kind, 0) + 1
    return hits
