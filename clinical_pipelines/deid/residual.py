"""Residual-PHI scan: nothing identifying may be found in de-identified output.

Two searches, both reporting counts per kind only, never the strings themselves:

- **known identifiers**: for each item, the original's identifying strings (the values the profile
  or policy removes or replaces) are searched for in the de-identified bytes;
- **re-analysis**: Presidio, with the clinical recognizers, reads the de-identified text again
  (notes, and every text value of a de-identified DICOM file) for identifiers nobody listed.
  Our own replacements (pseudonyms, ``[NAME]``-style placeholders, ``90+``) and dates (shifted on
  purpose) are not findings; in DICOM values, spaCy's statistical PERSON guesses on isolated codes
  ("HU", "MONOCHROME2") are not either, while any Person Name (PN) value other than a pseudonym is.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult

MIN_LENGTH = 4  # shorter strings ("M", "YES", "CT") match by chance and identify nobody
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "AE", "UC", "AS"}


def _values_of(value: object) -> list[object]:
    """The values of a possibly multi-valued element (pydicom's MultiValue is a Sequence, not a list)."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]


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
        values = _values_of(element.value)
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


# What de-identification itself writes: a pseudonym, a placeholder, the anonymised dummy, an age cap.
_OWN_OUTPUT = re.compile(r"(?:PSN-[A-Z2-7]{16}|\[[A-Z_]+\]|ANONYMIZED|90\+.*)")
_TITLES = {"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "rev"}
NOT_RESIDUAL = frozenset({"DATE"})  # dates are shifted, not removed
RE_ANALYSIS_PREFIX = "presidio:"
_DICOM_TEXT_VRS = _TEXT_VRS | {"PN"}


def residual_entities(text: str, results: Sequence[RecognizerResult], *, ner_persons: bool = True) -> Counter[str]:
    """Identifiers Presidio still finds in de-identified ``text``, counted as ``presidio:<ENTITY>``.

    ``ner_persons=False`` ignores the guesses of spaCy's statistical NER (PERSON, ORGANIZATION, LOCATION,
    DATE_TIME...; kept: names found by a pattern, after a title or in a ``Name:`` field), for short values
    read out of context.
    """
    from clinical_pipelines.deid.notes import is_statistical_guess

    found: Counter[str] = Counter()
    for result in results:
        if result.entity_type in NOT_RESIDUAL:
            continue
        value = text[result.start : result.end].strip(" .,;:()")
        if len(value) < 2 or _OWN_OUTPUT.fullmatch(value) or value.lower() in _TITLES:
            continue
        if result.entity_type == "AGE_OVER_89" and "90+" in text[result.start : result.end + 1]:
            continue  # the Safe Harbor cap we wrote ("age 90+")
        if not ner_persons and is_statistical_guess(result):
            continue
        found[RE_ANALYSIS_PREFIX + result.entity_type] += 1
    return found


def dicom_text_values(data: bytes) -> tuple[set[str], set[str]]:
    """(Person Name values, other text values) of a de-identified instance, nested ones included."""
    import pydicom

    names: set[str] = set()
    texts: set[str] = set()
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    for element in ds.iterall():
        if element.VR not in _DICOM_TEXT_VRS or element.value in (None, ""):
            continue
        values = _values_of(element.value)
        for value in values:
            text = str(value).strip()
            if text:
                (names if element.VR == "PN" else texts).add(text)
    return names, texts


def foreign_names(names: Iterable[str]) -> int:
    """How many Person Name values are neither a pseudonym nor a placeholder (each one is a finding)."""
    return sum(1 for name in names if not _OWN_OUTPUT.fullmatch(name.replace("^", " ").strip()))
