"""The pipeline's per-item validation for one file at a time, without Great Expectations.

The standalone CLI judges files one by one and must not wait seconds for GX to start, yet it must
refuse exactly what the pipeline refuses. So it runs the same parsers (:func:`parse_dicom`,
:func:`parse_note`) and evaluates the same per-item rules of the same suites
(:func:`dicom_rules`, :func:`note_rules`) here in plain Python. Only the rule kinds those suites
use per item are known; an unknown kind fails closed. Frame-level rules (unique SOP Instance UID)
are the caller's: a batch sees all its items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clinical_pipelines.limits import Limits
from clinical_pipelines.validate.dicom import HEADER_PREFIX_BYTES, ParseFailure, parse_dicom
from clinical_pipelines.validate.expectations import Rule
from clinical_pipelines.validate.notes import parse_note
from clinical_pipelines.validate.suites import dicom_rules, note_rules

VALIDATION_FAILED = "validation_failed"  # the pipeline's quarantine reason for failed per-item rules


def _passes(rule: Rule, row: dict[str, Any]) -> bool:
    """Whether one row meets one per-item rule; nulls pass, as in GX (not-null is its own rule)."""
    kwargs = rule.kwargs
    value = row.get(kwargs.get("column", ""))
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        return value is not None
    if value is None:
        return True
    if rule.expectation == "ExpectColumnValuesToBeInSet":
        return value in kwargs["value_set"]
    if rule.expectation == "ExpectColumnValuesToBeBetween":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        try:
            return (low is None or value >= low) and (high is None or value <= high)
        except TypeError:  # a value of the wrong type is out of range, as in GX
            return False
    return False


def failed_rules(row: dict[str, Any], rules: Sequence[Rule]) -> list[str]:
    """Names of the per-item ``rules`` that ``row`` (one parsed item) fails, sorted."""
    return sorted(rule.name for rule in rules if rule.per_item and not _passes(rule, row))


def _judged(parsed: dict[str, Any] | ParseFailure, rules: Sequence[Rule]) -> dict[str, Any] | ParseFailure:
    if isinstance(parsed, ParseFailure):
        return parsed
    failed = failed_rules(parsed, rules)
    if failed:
        detail = "failed: " + ", ".join(failed)
        if parsed.get("missing_required_attributes"):  # attribute keywords, never values
            detail += f"; missing: {parsed['missing_required_attributes']}"
        return ParseFailure(VALIDATION_FAILED, detail)
    return parsed


def check_dicom(
    data: bytes, limits: Limits | None = None, *, dataset: Any | None = None
) -> dict[str, Any] | ParseFailure:
    """One DICOM file judged as the pipeline's validation stage judges it: its header, or why it is refused.

    Like the pipeline, a large file is judged from its first :data:`HEADER_PREFIX_BYTES` when they hold
    the whole header (pixel data by its declared length), else from all of it. ``dataset``: pydicom's
    reading of all of ``data`` (:func:`~clinical_pipelines.validate.dicom.read_whole`), when the caller
    has one: judged as all of the file, without reading it again (the verdict is the same).
    """
    parsed = None
    if dataset is not None:
        parsed = parse_dicom(data, limits=limits, dataset=dataset)
    elif len(data) > HEADER_PREFIX_BYTES:
        parsed = parse_dicom(data[:HEADER_PREFIX_BYTES], size=len(data), limits=limits)
        if isinstance(parsed, ParseFailure) and parsed.reason == "truncated_dicom":
            parsed = None  # the header runs past the prefix: read the whole file
    # Rules built per call: the suite carries today's date (no future study dates), which a long run may cross.
    return _judged(parse_dicom(data, limits=limits) if parsed is None else parsed, dicom_rules())


def check_note(data: bytes, limits: Limits | None = None) -> dict[str, Any] | ParseFailure:
    """One note judged as the pipeline's validation stage judges it: its shape, or why it is refused."""
    return _judged(parse_note(data, limits=limits), note_rules())
