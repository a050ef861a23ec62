"""Moving a dataset's dates and times by one patient's offset (the modified-dates option), DA+TM pairs
together, so intervals within a patient stay exact and no original time of day survives."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from clinical_pipelines.deid.dicom_values import each, raw_values
from clinical_pipelines.deid.temporal import (
    date_time_pairs,
    keep_time_datetime,
    shift_date,
    shift_date_time,
    shift_datetime,
    shift_time,
)

SHIFTING = frozenset("CD")  # the actions that move a date or time under the modified-dates option


def paired_times(ds: Dataset, actions: dict[int, str]) -> set[int]:
    """TM tags of ``ds`` that move together with their date (both present and both shifted)."""
    pairs = date_time_pairs()
    found: set[int] = set()
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        time_tag = pairs.get(tag)
        if time_tag is None or time_tag not in ds:
            continue
        if actions.get(tag) in SHIFTING and actions.get(time_tag) in SHIFTING and raw_values(ds, tag):
            found.add(time_tag)
    return found


def shift_temporal(
    ds: Dataset, tag: int, vr: str, actions: dict[int, str], days: int, seconds: int, *, keep_time_of_day: bool
) -> int:
    """Move a DA, TM or DT value by ``days`` and ``seconds``; a date takes its paired time along.

    Returns how many values moved (0 for an empty value, 2 for a date with its time). With
    ``keep_time_of_day``, TM values and the time in DT stay as they were. A malformed value raises
    :class:`~clinical_pipelines.deid.temporal.TemporalError`.
    """
    value = raw_values(ds, tag)
    if not value:
        return 0
    time_tag = date_time_pairs().get(tag) if vr == "DA" and seconds else None
    if time_tag is not None and time_tag in ds and actions.get(time_tag) in SHIFTING:
        times = raw_values(ds, time_tag)
        _shift_pair(ds, tag, time_tag, value, times, days, seconds)
        return 2 if times else 1
    if vr == "DA":
        ds[tag] = DataElement(tag, vr, each(value, lambda v: shift_date(v, days)))
    elif vr == "TM":
        if keep_time_of_day:
            return 0
        ds[tag] = DataElement(tag, vr, each(value, lambda v: shift_time(v, seconds)))
    elif keep_time_of_day:
        ds[tag] = DataElement(tag, vr, each(value, lambda v: keep_time_datetime(v, days)))
    else:
        ds[tag] = DataElement(tag, vr, each(value, lambda v: shift_datetime(v, days, seconds)))
    return 1


def _shift_pair(ds: Dataset, date_tag: int, time_tag: int, dates: Any, times: Any, days: int, seconds: int) -> None:
    date_list = dates if isinstance(dates, list) else [dates]
    time_list = times if isinstance(times, list) else [times] if times else []
    if len(time_list) != len(date_list):  # no value to pair with: each moves on its own
        ds[date_tag] = DataElement(date_tag, "DA", each(dates, lambda v: shift_date(v, days)))
        if times:
            ds[time_tag] = DataElement(time_tag, "TM", each(times, lambda v: shift_time(v, seconds)))
        return
    moved = [
        shift_date_time(d, t, days, seconds) if t.strip() else (shift_date(d, days), t)
        for d, t in zip(date_list, time_list, strict=True)
    ]
    new_dates, new_times = [d for d, _ in moved], [t for _, t in moved]
    ds[date_tag] = DataElement(date_tag, "DA", new_dates if isinstance(dates, list) else new_dates[0])
    ds[time_tag] = DataElement(time_tag, "TM", new_times if isinstance(times, list) else new_times[0])
