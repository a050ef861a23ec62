"""Locale-independent text formats for dates and ages as they are planted in drops."""

from __future__ import annotations

import datetime

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def dicom_date(d: datetime.date) -> str:
    """Return the DICOM DA form ``YYYYMMDD``."""
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def iso_date(d: datetime.date) -> str:
    """Return ``YYYY-MM-DD``."""
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def us_date(d: datetime.date) -> str:
    """Return ``MM/DD/YYYY``."""
    return f"{d.month:02d}/{d.day:02d}/{d.year:04d}"


def long_date(d: datetime.date) -> str:
    """Return ``March 5, 2024``."""
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year:04d}"


def short_date(d: datetime.date) -> str:
    """Return ``5 Mar 2024``."""
    return f"{d.day} {MONTHS[d.month - 1][:3]} {d.year:04d}"


def age_years(birth: datetime.date, on: datetime.date) -> int:
    """Return the completed years of age on date ``on``."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def dicom_age(years: int) -> str:
    """Return the DICOM AS form, e.g. ``093Y``."""
    return f"{years:03d}Y"
