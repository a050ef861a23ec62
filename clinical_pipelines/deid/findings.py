"""Residual findings for one de-identified output, shared by the pipeline stage and the standalone CLI.

Built on the public functions of :mod:`clinical_pipelines.deid.residual`; what counts as a finding
is decided there. This module only assembles, per output, the two searches (the original's known
identifiers, Presidio's re-analysis) and keeps the re-analysis cheap:

- each distinct text value is analysed once per scanner (a series shares nearly all its values);
- values de-identification wrote itself (pseudonyms, placeholders) and values that cannot carry a
  name, id or contact (UIDs, numbers, under :data:`~clinical_pipelines.deid.residual.MIN_LENGTH`
  characters) are not sent to the analyzer;
- the analyzer (Presidio and spaCy, seconds to load) is asked for only when a value needs it.

Findings are counts per kind, never values.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from clinical_pipelines.deid.residual import (
    MIN_LENGTH,
    NOT_RESIDUAL,
    dicom_identifiers,
    dicom_text_values,
    foreign_names,
    identifiers_in,
    longer_than_a_code,
    residual_entities,
    scan,
)

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult
    from pydicom import Dataset

    from clinical_pipelines.deid.dicom import DicomDeidentifier, DicomDeidReport
    from clinical_pipelines.deid.notes import NoteResult
    from clinical_pipelines.deid.tables import TableDeidResult, TablePolicy

Analyze = Callable[[Sequence[str]], list[list["RecognizerResult"]]]

# What can hold no identifier: a UID or number (digits, dots, signs), or what de-identification wrote.
_INERT = re.compile(r"[-+0-9.\s]*|PSN-[A-Z2-7]{16}|\[[A-Z_]+\]|ANONYMIZED")


def needs_reanalysis(value: str) -> bool:
    """Whether a text value left in an output could still hold an identifier the analyzer would find."""
    value = value.strip()
    return len(value) >= MIN_LENGTH and not _INERT.fullmatch(value)


_PIXEL_DATA = 0x7FE00010
_PIXEL_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) Pixel Data, little endian
_LONG_VRS = {b"OB", b"OW", b"UN"}


def header_bytes(output: bytes, pixel_length: int | None = None) -> bytes:
    """``output`` without the value of its top-level Pixel Data element, when that element is found to end
    the file exactly (native pixel data, defined length); otherwise all of ``output``.

    Pixel data is copied byte for byte from the validated input and burned-in text is the burned-in
    policy's concern: the known-identifier search looks for header strings, and skipping the pixel
    bytes (over 99 % of a typical image) makes it a hundred times cheaper. ``pixel_length``, the
    length of the original's Pixel Data value when known, says where to look first (the backward search
    otherwise reads every pixel byte); the element found there is checked as any other.
    """
    if pixel_length is not None:
        for header in (12, 8):  # explicit VR (OB/OW), implicit VR
            at = len(output) - pixel_length - header
            if at >= 0 and output.startswith(_PIXEL_TAG, at) and _pixel_value_start(output, at) == at + header:
                return output[: at + header]
    at = output.rfind(_PIXEL_TAG)
    start = _pixel_value_start(output, at) if at >= 0 else None
    return output if start is None else output[:start]


def _pixel_value_start(output: bytes, at: int) -> int | None:
    """Where the value of the Pixel Data element whose tag is at ``at`` starts, if that value ends ``output``."""
    if output[at + 4 : at + 6] in _LONG_VRS and output[at + 6 : at + 8] == b"\0\0":  # explicit VR
        start, length = at + 12, struct.unpack_from("<I", output, at + 8)[0] if len(output) >= at + 12 else -1
    elif len(output) >= at + 8:  # implicit VR
        start, length = at + 8, struct.unpack_from("<I", output, at + 4)[0]
    else:
        return None
    if start + length != len(output) or length == 0xFFFFFFFF:
        return None
    return start


class DicomFindings:
    """Residual findings of de-identified DICOM instances, for one deidentifier.

    ``analyzer`` returns a function analysing many texts (e.g. ``NoteDeidentifier.analyze_many``);
    it is called at most once, when the first value needing re-analysis turns up. None skips the
    re-analysis (known identifiers and foreign Person Names are still searched).
    """

    def __init__(self, deidentifier: DicomDeidentifier, analyzer: Callable[[], Analyze] | None) -> None:
        self.deidentifier = deidentifier
        self.actions = deidentifier.profile.actions
        # Values the profile keeps ("K"), remaps ("U") or, with a text cleaner, cleans ("C") are not identifiers.
        self.kept = frozenset("KUC") if deidentifier.text_cleaner is not None else frozenset("KU")
        self._analyzer_factory = analyzer
        self._analyze: Analyze | None = None
        self._seen: dict[str, Counter[str]] = {}
        self.identifiers_searched = 0

    def identifiers_of(self, original: Dataset) -> dict[str, set[str]]:
        """The identifying strings of ``original``, read before it is de-identified (saves reading it twice)."""
        return identifiers_in(original, self.actions, kept=self.kept)

    def deidentify(self, data: bytes, *, dataset: Dataset | None = None) -> tuple[bytes, DicomDeidReport, Counter[str]]:
        """De-identify ``data`` with the deidentifier and return (output, report, findings in the output).

        The original is read once: its identifiers are taken from the dataset the deidentifier reads,
        before it changes it (``dataset``, when the caller already read all of ``data``). Raises what
        :meth:`DicomDeidentifier.deidentify_bytes` raises.
        """
        out, report, hits, texts = self.deidentify_deferred(data, dataset=dataset)
        return out, report, +(hits + self.reanalysed(texts))

    def deidentify_deferred(
        self, data: bytes, *, dataset: Dataset | None = None
    ) -> tuple[bytes, DicomDeidReport, Counter[str], tuple[str, ...]]:
        """As :meth:`deidentify`, without the re-analysis: (output, report, findings of the searches that need
        no analyzer, the output's text values for :meth:`reanalysed`). A worker process that has no analyzer
        loaded returns these, and the process holding the analyzer finishes the findings."""
        identifiers: dict[str, set[str]] = {}
        pixels: list[int] = []

        def read(ds: Dataset) -> None:
            identifiers.update(self.identifiers_of(ds))
            raw = ds._dict.get(_PIXEL_DATA)
            if raw is not None and getattr(raw, "length", 0xFFFFFFFF) != 0xFFFFFFFF:
                pixels.append(raw.length)

        out, report = self.deidentifier.deidentify_bytes(data, before=read, dataset=dataset)
        hits, texts = self.searched(data, out, identifiers=identifiers, pixel_length=pixels[0] if pixels else None)
        return out, report, hits, texts

    def __call__(
        self,
        original: bytes,
        output: bytes,
        *,
        identifiers: dict[str, set[str]] | None = None,
        pixel_length: int | None = None,
    ) -> Counter[str]:
        """Findings in ``output``, the de-identified form of ``original`` (zero counts dropped).

        ``identifiers``: the original's, when already read (:meth:`identifiers_of`); ``pixel_length``:
        its Pixel Data value's length, when known (see :func:`header_bytes`).
        """
        hits, texts = self.searched(original, output, identifiers=identifiers, pixel_length=pixel_length)
        return +(hits + self.reanalysed(texts))

    def searched(
        self,
        original: bytes,
        output: bytes,
        *,
        identifiers: dict[str, set[str]] | None = None,
        pixel_length: int | None = None,
    ) -> tuple[Counter[str], tuple[str, ...]]:
        """The original's identifiers and foreign Person Names found in ``output``, and its text values."""
        if identifiers is None:
            identifiers = dicom_identifiers(original, self.actions, kept=self.kept)
        self.identifiers_searched += sum(len(v) for v in identifiers.values())
        hits: Counter[str] = Counter(scan(header_bytes(output, pixel_length), identifiers))
        person_names, texts = dicom_text_values(output)
        hits["presidio:PN"] += foreign_names(person_names)
        return hits, tuple(sorted(texts))

    def reanalysed(self, texts: Sequence[str]) -> Counter[str]:
        """What the analyzer finds in the text values ``texts`` (each distinct value analysed once)."""
        hits: Counter[str] = Counter()
        if self._analyzer_factory is None:
            return hits
        new = sorted({t for t in texts if t not in self._seen and needs_reanalysis(t)})
        if new:
            if self._analyze is None:
                self._analyze = self._analyzer_factory()
            for text, results in zip(new, self._analyze(new), strict=True):
                # spaCy's PERSON guesses count on values written as words, not on codes
                self._seen[text] = residual_entities(
                    text, results, ner_persons=longer_than_a_code(text), in_context=False
                )
        for text in texts:
            hits.update(self._seen.get(text, ()))
        return hits


def note_identifiers(text: str, result: NoteResult) -> dict[str, set[str]]:
    """The identifying strings de-identification found in ``text`` (the original note), by entity.

    Dates are left out: they are rewritten by design, and a shifted date may equal another original one.
    """
    identifiers: dict[str, set[str]] = {}
    for entity, start, end in result.spans:
        value = text[start:end].strip()
        if entity not in NOT_RESIDUAL and len(value) >= MIN_LENGTH:
            identifiers.setdefault(entity, set()).add(value)
    return identifiers


def note_findings(text: str, result: NoteResult, reread: Sequence[RecognizerResult]) -> Counter[str]:
    """Findings in a de-identified note: the original's identifiers still present, plus the re-analysis
    ``reread`` (the analyzer's results on ``result.text``) (zero counts dropped)."""
    hits = Counter(scan(result.text.encode("utf-8"), note_identifiers(text, result)))
    return +(hits + residual_entities(result.text, reread))


def table_findings(
    original: object, result: TableDeidResult, policy: TablePolicy, output: bytes, analyze: Analyze | None
) -> Counter[str]:
    """Findings in a released table: the original's patient keys and direct identifiers (columns the policy
    pseudonymises or drops) found in the CSV ``output``, plus the re-analysis of every distinct released
    cell that could hold an identifier (free-text columns with spaCy's name guesses too) (zero counts dropped).

    ``original`` and ``result.frame`` are pandas DataFrames.
    """
    frame = original
    identifiers: dict[str, set[str]] = {}
    for column, role in policy.roles.items():
        if role in ("patient_key", "drop") and column in frame:  # type: ignore[operator]
            values = {str(v).strip() for v in frame[column].dropna()}  # type: ignore[index]
            identifiers.setdefault(column, set()).update(v for v in values if len(v) >= MIN_LENGTH)
    hits: Counter[str] = Counter(scan(output, identifiers))
    if analyze is None:
        return +hits
    released = result.frame
    free_text = set(result.report.columns_free_text)
    for ner_persons in (False, True):
        columns = [c for c in released.columns if (c in free_text) == ner_persons]
        values = sorted({str(v).strip() for c in columns for v in released[c].dropna().unique()
                         if needs_reanalysis(str(v))})  # fmt: skip
        for text, results in zip(values, analyze(values) if values else [], strict=True):
            hits.update(residual_entities(text, results, ner_persons=ner_persons))
    return +hits
