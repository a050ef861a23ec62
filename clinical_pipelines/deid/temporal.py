"""Shift DICOM dates and times (DA, TM, DT) by one per-patient offset, keeping intervals exact.

The offset is whole days plus a time-of-day part (seconds): a date with its time (a DA/TM pair
such as Study Date/Study Time, or a DT with hours) moves by the whole offset, so the date may
cross midnight; a date alone moves by the whole days only (as in notes and tables); a time alone
moves by the seconds part, wrapping around midnight. Malformed values raise :class:`TemporalError`
with a reason, never a value.
"""

from __future__ import annotations

import datetime
import re
from functools import cache

_TM = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?")
_DT = re.compile(r"(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?")
DAY = 86400


class TemporalError(ValueError):
    """A DA/TM/DT value that cannot be shifted; ``reason`` is a quarantine reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _date(text: str, vr: str) -> datetime.date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return datetime.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise TemporalError("malformed_date", f"a {vr} value is not YYYYMMDD") from None


def _time(text: str) -> tuple[int, str]:
    """(seconds since midnight, fraction text incl. the dot or "") of a TM value."""
    match = _TM.fullmatch(text)
    if match is None:
        raise TemporalError("malformed_time", "a TM value is not HH[MM[SS[.F]]]")
    hours, minutes, seconds = (int(g or 0) for g in match.groups()[:3])
    if hours > 23 or minutes > 59 or seconds > 60:  # 60: a leap second, as PS3.5 allows
        raise TemporalError("malformed_time", "a TM value is out of range")
    return hours * 3600 + minutes * 60 + min(seconds, 59), match.group(4) or ""


def _format_time(seconds: int, fraction: str) -> str:
    hours, rest = divmod(seconds % DAY, 3600)
    return f"{hours:02d}{rest // 60:02d}{rest % 60:02d}{fraction}"


def shift_date(text: str, days: int, vr: str = "DA") -> str:
    """A DA value (YYYYMMDD) moved by ``days``."""
    return (_date(text.strip(), vr) + datetime.timedelta(days=days)).strftime("%Y%m%d")


def shift_time(text: str, seconds: int) -> str:
    """A TM value moved by ``seconds`` around the clock (wraps at midnight); written as HHMMSS[.F]."""
    value, fraction = _time(text.strip())
    return _format_time(value + seconds, fraction)


def shift_date_time(date: str, time: str, days: int, seconds: int) -> tuple[str, str]:
    """A DA/TM pair moved together by ``days`` and ``seconds`` (the date follows the clock across midnight)."""
    value, fraction = _time(time.strip())
    carry, rest = divmod(value + seconds, DAY)
    return shift_date(date, days + carry), _format_time(rest, fraction)


def shift_datetime(text: str, days: int, seconds: int) -> str:
    """A DT value moved by the offset: the whole offset when it has hours, the days alone when it is a date.

    The UTC offset suffix (&ZZXX) is kept; a shifted time is written with seconds (HHMMSS[.F]).
    """
    text = text.strip()
    match = _DT.fullmatch(text)
    if match is None:
        raise TemporalError("malformed_date", "a DT value is not YYYYMMDD[HH[MM[SS[.F]]]][&ZZXX]")
    date, time, zone = match.group(1), match.group(2), match.group(3) or ""
    if not time:
        return shift_date(date, days, "DT") + zone
    new_date, new_time = shift_date_time(date, time, days, seconds)
    return new_date + new_time + zone


def keep_time_datetime(text: str, days: int) -> str:
    """A DT value whose date moves by ``days`` and whose time of day and zone stay (keep-times option)."""
    text = text.strip()
    match = _DT.fullmatch(text)
    if match is None:
        raise TemporalError("malformed_date", "a DT value is not YYYYMMDD[HH[MM[SS[.F]]]][&ZZXX]")
    if match.group(2):
        _time(match.group(2))  # validated even when kept
    return shift_date(match.group(1), days, "DT") + text[8:]


@cache
def date_time_pairs() -> dict[int, int]:
    """DA tag -> TM tag of the same event, from the data dictionary's keywords (``XDate``/``XTime``,
    ``DateOfX``/``TimeOfX``), not a hand list."""
    from pydicom.datadict import DicomDictionary, keyword_dict

    pairs: dict[int, int] = {}
    for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items():
        if vr != "DA" or "Date" not in keyword:
            continue
        head, _, tail = keyword.rpartition("Date")
        partner = keyword_dict.get(f"{head}Time{tail}")
        if partner is not None and DicomDictionary[partner][0] == "TM":
            pairs[tag] = partner
    return pairs
