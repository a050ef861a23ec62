"""Residual-PHI scan: nothing identifying may be found in de-identified output.

Two searches, both reporting counts per kind only, never the strings themselves:

- **known identifiers**: for each item, the original's identifying strings (the values the profile
  or policy removes or replaces) are searched for in the de-identified bytes;
- **re-analysis**: Presidio, with the clinical recognizers, reads the de-identified text again
  (notes, and every text value of a de-identified DICOM file) for identifiers nobody listed.
  Our own replacements (pseudonyms, ``[NAME]``-style placeholders, ``90+``) and dates (shifted on
  purpose) are not findings; in DICOM values, spaCy's statistical PERSON guesses count on values
  longer than a code (:func:`longer_than_a_code`: several words of letters, as a name is written)
  and not on isolated codes ("HU", "MONOCHROME2"), while any Person Name (PN) value other than a
  pseudonym is a finding. Every remaining text value is re-read: LO, LT, SH, ST, UT, PN, UC, AE,
  AS and UN (decoded when it is text), nested ones included.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from clinical_pipelines import pydicom_quiet
from clinical_pipelines.deid.codes import CODE_MEANING, is_standard_code_meaning, standard_meaning_texts

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult
    from pydicom.tag import BaseTag

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
    and all private text values, keyed by attribute keyword (or "private").

    Attributes without a row in ``actions`` are judged as the engine's fail-closed rules judge them:
    tags unknown to the data dictionary (and their UN text), the overlay and text groups, Person
    Name values, free text (LT/ST/UT) and every written text of a Content Sequence are identifiers
    too (as cleaned text, "C", when a text cleaner is in use).
    """
    import pydicom

    return identifiers_in(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True), actions, kept=kept)


def identifiers_in(
    ds: object, actions: dict[int, str], *, kept: frozenset[str] = frozenset("KU")
) -> dict[str, set[str]]:
    """:func:`dicom_identifiers` of an instance already read (a pydicom Dataset, not yet de-identified).

    ``ds`` is left exactly as it was read: values are converted on the side, never stored back (a
    converted element would no longer be copied byte for byte by the de-identification's writer).
    """
    found: dict[str, set[str]] = {}
    for element, in_content in _elements(ds, False, store=False):
        if element.VR not in _DICOM_TEXT_VRS or element.value in (None, "", b""):
            continue
        tag = int(element.tag)
        listed = actions.get(tag)
        action = "private" if element.tag.is_private else listed or _unlisted(element, in_content)
        if action in kept:
            continue
        values = _un_text(element.value) if element.VR == "UN" else _values_of(element.value)
        for value in values:
            text = str(value)
            if listed is None and not _identifying_unlisted(text):
                continue
            parts = [text, *text.replace("^", " ").split()] if element.VR == "PN" else [text]
            for part in parts:
                if _worth_searching(part):
                    found.setdefault(element.keyword or "private", set()).add(part.strip())
    return found


_DIGITS = re.compile(r"\d{4}")


def _identifying_unlisted(text: str) -> bool:
    """Whether a replaced value without a table row is worth searching for: written words or a number
    (an id, a phone), not one concept word ("Date", "Finding") or the standard's own meaning for a code."""
    text = text.strip()
    if text.casefold() in standard_meaning_texts():
        return False
    return longer_than_a_code(text) or _DIGITS.search(text) is not None


_CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119})


def _unlisted(element: object, in_content: bool) -> str:
    """The action the DICOM engine takes on a public attribute Table E.1-1 has no row for."""
    from pydicom.datadict import get_entry

    tag, vr = int(element.tag), element.VR  # type: ignore[attr-defined]
    group = tag >> 16
    if vr == "UN" or group >> 8 in (0x50, 0x60) or group == 0x4000:  # curves, overlays, the text group
        return "X"
    try:
        get_entry(tag)
    except KeyError:
        return "X"  # unknown to the data dictionary
    if vr == "PN" or (vr in _FREE_TEXT_VRS) or (in_content and tag not in _CODE_TAGS):
        return "C"  # replaced with a dummy, or cleaned when a text cleaner is in use
    return "K"


def _elements(ds: object, in_content: bool, *, store: bool = True) -> Iterable[tuple[object, bool]]:
    """Every element of ``ds`` and its sequence items, with whether it lies inside a Content Sequence
    as text a person wrote (a code's meaning as the standard gives it is not)."""
    standard_meaning = in_content and is_standard_code_meaning(ds)
    for element in _text_elements(ds, store=store):
        yield element, in_content and not (standard_meaning and int(element.tag) == CODE_MEANING)
        if element.VR == "SQ":
            inner = in_content or int(element.tag) == _CONTENT_SEQUENCE
            for item in element.value or ():
                yield from _elements(item, inner, store=store)


_CONTENT_SEQUENCE = 0x0040A730
# Explicit VRs that pydicom converts as they are written: never text, a sequence or UN, unless a
# fixed-width value has a length that is no multiple of its width (pydicom then reads it as UN).
_FIXED_WIDTH = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
_MAYBE_TEXT = frozenset({"AE", "AS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "SQ", "UN"})


class _Text(NamedTuple):
    """A text element's value read straight from its raw bytes, as pydicom would convert it."""

    tag: BaseTag
    VR: str
    value: str | list[str]

    @property
    def keyword(self) -> str:
        from pydicom.datadict import dictionary_has_tag, dictionary_keyword

        return dictionary_keyword(self.tag) if dictionary_has_tag(self.tag) else ""


_SPLIT_TEXT = frozenset({"SH", "LO", "UC"})  # pydicom's convert_text: split on "\\", each part stripped of "\0 "
_SINGLE_TEXT = frozenset({"ST", "LT", "UT"})  # convert_single_string: one value, stripped of trailing "\0 "


def _ascii_text(vr: str, raw: bytes) -> str | list[str] | None:
    """The value pydicom gives a text element of ``vr`` whose raw bytes are ASCII without an escape (any
    DICOM character set decodes them as ASCII); None when this VR (PN, UN) is left to pydicom."""
    text = raw.decode("ascii")
    if vr in _SINGLE_TEXT:
        return text.rstrip("\0 ")
    if vr in _SPLIT_TEXT:
        parts = [part.rstrip("\0 ") for part in text.split("\\")]
    elif vr == "AE":  # convert_AE_string: leading and trailing spaces are not significant
        parts = [part.strip() for part in text.split("\\")]
    elif vr == "AS":  # convert_string (multi_string): the padding removed, then split
        parts = text.rstrip(" \0").split("\\")
    else:
        return None
    return parts[0] if len(parts) == 1 else parts


def _text_elements(ds: object, *, store: bool = True) -> Iterable[object]:
    """The elements of ``ds`` (in tag order, as iterating a Dataset gives them) that may be text, a
    sequence or UN once pydicom converts them, with their values as pydicom gives them.

    Converting every value (numbers, codes, dates, UIDs...) is most of the cost of reading a dataset's
    elements: an element read with an explicit VR other than UN keeps that VR (pydicom's
    ``raw_element_vr``), so a value written as, say, DS or US is skipped without being converted. A text
    value of ASCII bytes without an escape is read as pydicom's converters read it (the same string in
    every DICOM character set); elements without a VR (implicit VR), UN, PN, sequences and every other
    text value are converted by pydicom itself, with the character set and VR rules of a plain reading,
    and stored back in ``ds`` as reading does unless ``store`` is False.
    """
    from pydicom import config

    pydicom_quiet.configure()
    from pydicom.dataelem import RawDataElement

    fast = config.settings.reading_validation_mode != config.RAISE  # else pydicom may refuse a value
    raw_elements = ds._dict  # type: ignore[attr-defined]
    for tag in sorted(raw_elements):
        raw = raw_elements[tag]
        if not isinstance(raw, RawDataElement):
            yield raw
            continue
        vr, value = raw.VR, raw.value
        if vr is not None and vr not in _MAYBE_TEXT:
            width = _FIXED_WIDTH.get(vr)
            if width is None or value is None or len(value) % width == 0:
                continue  # converted, it stays this VR: no text
        elif fast and vr is not None and value and value.isascii() and b"\x1b" not in value:
            text = _ascii_text(vr, value)
            if text is not None:
                yield _Text(raw.tag, vr, text)
                continue
        yield ds[tag] if store else _converted(ds, raw)  # type: ignore[index]


def _converted(ds: Any, raw: Any) -> object:
    """``raw`` converted as ``ds[tag]`` converts it (character set, VR rules), without storing it in ``ds``."""
    from pydicom.charset import default_encoding
    from pydicom.dataelem import convert_raw_data_element

    if raw.value is None and raw.length != 0:
        return ds[raw.tag]  # a deferred read: pydicom's own reading (never for the in-memory files read here)
    encoding = default_encoding if raw.tag == 0x00080005 else ds.original_character_set or ds._character_set
    return convert_raw_data_element(raw, encoding=encoding, ds=ds)


_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT"})


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
#: Dates are shifted, not removed: ours (DATE) and Presidio's (DATE_TIME, shifted when it parses as a date).
NOT_RESIDUAL = frozenset({"DATE", "DATE_TIME"})
RE_ANALYSIS_PREFIX = "presidio:"
_DICOM_TEXT_VRS = _TEXT_VRS | {"PN", "UN"}
# "Longer than a code": at least two words of letters and this many letters in all. Codes, units and
# enumerated values are single tokens ("HU", "MONOCHROME2", "ORIGINAL"); a written name has two words.
CODE_MAX_LETTERS = 5
_WORD = re.compile(r"[^\W\d_]{2,}")


def longer_than_a_code(value: str) -> bool:
    """True when ``value`` reads as written words (two or more, over ``CODE_MAX_LETTERS`` letters), not a code.

    spaCy's PERSON guesses are findings on such values; on a single token they are noise.
    """
    words = _WORD.findall(value.replace("^", " "))
    return len(words) >= 2 and sum(len(w) for w in words) > CODE_MAX_LETTERS


def residual_entities(
    text: str, results: Sequence[RecognizerResult], *, ner_persons: bool = True, in_context: bool = True
) -> Counter[str]:
    """Identifiers Presidio still finds in de-identified ``text``, counted as ``presidio:<ENTITY>``.

    ``ner_persons=False`` ignores the guesses of spaCy's statistical NER (PERSON, ORGANIZATION, LOCATION,
    DATE_TIME...; kept: names found by a pattern, after a title or in a ``Name:`` field), for short values
    read out of context. ``in_context=False`` (a DICOM value or a table cell, not a note) ignores the
    statistical guesses other than PERSON: a vendor ("GE MEDICAL SYSTEMS") or a body part read alone is
    not a place or an organisation that identifies anyone.
    """
    from clinical_pipelines.deid.notes import is_statistical_guess, is_unknown_word_guess

    found: Counter[str] = Counter()
    for result in results:
        if result.entity_type in NOT_RESIDUAL:
            continue
        value = text[result.start : result.end].strip(" .,;:()")
        if len(value) < 2 or _OWN_OUTPUT.fullmatch(value) or value.lower() in _TITLES:
            continue
        if result.entity_type == "AGE_OVER_89" and "90+" in text[result.start : result.end + 1]:
            continue  # the Safe Harbor cap we wrote ("age 90+")
        if is_statistical_guess(result) and (not ner_persons or (not in_context and result.entity_type != "PERSON")):
            continue
        if not in_context and is_unknown_word_guess(result):  # a model or product name read alone ("Aquilion")
            continue
        found[RE_ANALYSIS_PREFIX + result.entity_type] += 1
    return found


def dicom_text_values(data: bytes) -> tuple[set[str], set[str]]:
    """(Person Name values, other text values) of a de-identified instance, nested ones included."""
    import pydicom

    names: set[str] = set()
    texts: set[str] = set()
    _collect(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True), names, texts)
    return names, texts


def _collect(ds: object, names: set[str], texts: set[str]) -> None:
    """Text values of ``ds`` and its sequence items; a code's meaning is left out when it is the one
    the standard gives that code (it was written by the coding scheme, not by a person)."""
    standard_meaning = is_standard_code_meaning(ds)
    for element in _text_elements(ds):
        if element.VR == "SQ":
            for item in element.value or ():
                _collect(item, names, texts)
            continue
        if element.VR not in _DICOM_TEXT_VRS or element.value in (None, "", b""):
            continue
        if element.tag == CODE_MEANING and standard_meaning:
            continue
        values = _un_text(element.value) if element.VR == "UN" else _values_of(element.value)
        for value in values:
            text = str(value).strip()
            if text:
                (names if element.VR == "PN" else texts).add(text)


def _un_text(value: object) -> list[str]:
    """The text of a UN value when it is text (mostly printable once decoded), each part of a multi-value."""
    if not isinstance(value, bytes):
        return [str(value)]
    text = value.decode("utf-8", "replace").strip("\x00 ")
    printable = sum(c.isprintable() for c in text)
    if not text or printable < 0.9 * len(text):
        return []  # binary: numbers or a sequence, not something a name could be read from
    return text.split("\\")


def foreign_names(names: Iterable[str]) -> int:
    """How many Person Name values are neither a pseudonym nor a placeholder (each one is a finding)."""
    return sum(1 for name in names if not _OWN_OUTPUT.fullmatch(name.replace("^", " ").strip()))
