"""Keyed pseudonyms, UID remapping and per-patient date shifts, consistent across every modality.

Everything is an HMAC-SHA256 of the original value under the de-identification secret, with a
domain label so that the same string yields unrelated outputs in different roles. The same
patient (keyed by normalised MRN / Patient ID) gets the same pseudonymous id and the same date
shift in DICOM, notes and tables, in every drop; the same UID always maps to the same new UID.
Unlike an unkeyed hash, none of this can be recomputed without the secret.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
from functools import lru_cache

UID_ROOT = "2.25."  # UUID-derived UIDs (PS3.5 B.2): no registered root needed
DEFAULT_MAX_SHIFT_DAYS = 365


def normalize_patient_key(value: str) -> str:
    """The form in which a patient identifier keys its pseudonym and shift (trimmed, upper case)."""
    return value.strip().upper()


class Pseudonymizer:
    """Deterministic keyed mappings for one de-identification secret."""

    def __init__(self, key: bytes, *, max_shift_days: int = DEFAULT_MAX_SHIFT_DAYS) -> None:
        if len(key) < 32:
            raise ValueError("the de-identification key must be at least 32 bytes")
        self._key = key
        self.max_shift_days = max_shift_days
        # Per-instance caches: a series shares its study UID, patient and dates across files.
        self.uid = lru_cache(maxsize=65536)(self._uid)  # type: ignore[method-assign]
        self.patient_id = lru_cache(maxsize=65536)(self._patient_id)  # type: ignore[method-assign]
        self.date_shift_days = lru_cache(maxsize=65536)(self._date_shift_days)  # type: ignore[method-assign]
        self.time_shift_seconds = lru_cache(maxsize=65536)(self._time_shift_seconds)  # type: ignore[method-assign]

    def worker_copy_args(self) -> tuple[bytes, int]:
        """``(key, max_shift_days)``: what one of our own worker processes needs to build the same pseudonymizer.

        Only for handing to a local process this package starts (:mod:`clinical_pipelines.deid.dicom_pool`);
        never log, store or send it anywhere else.
        """
        return self._key, self.max_shift_days

    def mac(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` in ``domain``."""
        return hmac.new(self._key, domain.encode() + b"\0" + value.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()  # fmt: skip

    def token(self, domain: str, value: str, length: int = 16) -> str:
        """A pseudonymous token (upper-case base32, ``length`` characters) for ``value`` in ``domain``."""
        return base64.b32encode(self.mac(domain, value)).decode().rstrip("=")[:length]

    def _patient_id(self, patient_key: str) -> str:
        """The pseudonymous patient id for an MRN / Patient ID: ``PSN-`` + 16 base32 characters."""
        return "PSN-" + self.token("patient", normalize_patient_key(patient_key))

    def _date_shift_days(self, patient_key: str) -> int:
        """Days (negative, 1..max_shift_days into the past) by which this patient's dates move."""
        digest = self.mac("date-shift", normalize_patient_key(patient_key))
        return -(1 + int.from_bytes(digest[:8], "big") % self.max_shift_days)

    def _time_shift_seconds(self, patient_key: str) -> int:
        """The time-of-day part of this patient's offset: 1..86399 seconds (never 0, so no clock time stays).

        A date with its time moves by :meth:`datetime_shift` (the days plus these seconds); a date alone
        moves by :meth:`date_shift_days` only, as in notes and tables.
        """
        digest = self.mac("time-shift", normalize_patient_key(patient_key))
        return 1 + int.from_bytes(digest[:8], "big") % (86400 - 1)

    def datetime_shift(self, patient_key: str) -> datetime.timedelta:
        """The patient's whole offset for a date with a time: ``date_shift_days`` days + ``time_shift_seconds``."""
        return datetime.timedelta(days=self.date_shift_days(patient_key), seconds=self.time_shift_seconds(patient_key))

    def shift_datetime(self, value: datetime.datetime, patient_key: str) -> datetime.datetime:
        """``value`` (a date with a time of day) moved by the patient's whole offset."""
        return value + self.datetime_shift(patient_key)

    def _uid(self, uid: str) -> str:
        """A new UID for ``uid``: ``2.25.`` + a 128-bit keyed hash as a decimal (at most 44 characters)."""
        digest = self.mac("uid", uid.strip().rstrip("\0"))
        return UID_ROOT + str(int.from_bytes(digest[:16], "big"))

    def shift_date(self, value: datetime.date, patient_key: str) -> datetime.date:
        """``value`` moved by the patient's shift."""
        return value + datetime.timedelta(days=self.date_shift_days(patient_key))
