"""DICOM element values as the de-identifier reads and writes them: text straight from the raw bytes (no
conversion pydicom would do only to be thrown away), values mapped one by one, the cohort attributes the
catalog filters by, and the De-identification Method code items."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from pydicom.datadict import get_entry
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from clinical_pipelines.deid.pixels import CLEAN_PIXEL_CODE, CLEAN_PIXEL_MEANING

# Read from the de-identified dataset only: what the catalog filters cohorts by (DESIGN.md §5).
_COHORT_ATTRIBUTES = {
    "modality": 0x00080060,
    "body_part": 0x00180015,
    "study_date": 0x00080020,
    "patient_age": 0x00101010,
    "patient_sex": 0x00100040,
    "study_uid": 0x0020000D,
    "series_uid": 0x0020000E,
}


def cap_age(ds: Dataset) -> None:
    """Patient's Age over 89 years becomes 090Y (HIPAA Safe Harbor), as in notes ("90+") and tables."""
    age = raw_values(ds, 0x00101010)
    if isinstance(age, str) and len(age) == 4 and age[:3].isdigit() and age[3] == "Y" and int(age[:3]) > 89:
        ds[0x00101010] = DataElement(0x00101010, "AS", "090Y")


def cohort_attributes(ds: Dataset) -> dict[str, str]:
    """Non-identifying attributes of a de-identified dataset (modality, body part, shifted study date, age...).

    Absent or empty attributes are left out; multi-valued ones keep their first value.
    """
    found: dict[str, str] = {}
    for name, tag in _COHORT_ATTRIBUTES.items():
        try:
            value = raw_values(ds, tag)
        except Exception:  # an undecodable value is simply not a cohort attribute
            continue
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            found[name] = str(value)
    return found


def raw_values(ds: Dataset, tag: int) -> str | list[str] | None:
    """A text value (UI, DA, DT...) straight from the raw bytes when still unconverted; lists when multi-valued."""
    element = ds.get_item(tag)
    value = element.value if element is not None else None
    if isinstance(value, bytes):
        text = value.decode("latin-1").rstrip("\x00 ")
        parts = [p.strip() for p in text.split("\\")]
        return parts if len(parts) > 1 else parts[0]
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return str(value)


def method_code_item(value: str) -> Dataset:
    """A De-identification Method Code Sequence item for the DCM code ``value``."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = _CODE_MEANINGS.get(value, "De-identification")
    return item


_CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    CLEAN_PIXEL_CODE: CLEAN_PIXEL_MEANING,
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}


def map_text(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` applied to a text value, or to each value of a multi-valued one."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [fn(str(v)) for v in value]
    return fn(str(value))


def each(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` applied to a value or to each of several (empty ones stay as they are)."""
    if isinstance(value, list):
        return [fn(v) if v.strip() else v for v in value]
    return fn(value)


@cache
def in_dictionary(tag: int) -> bool:
    """Whether the data dictionary (repeating groups included) knows ``tag``."""
    try:
        get_entry(tag)
    except KeyError:
        return False
    return True
