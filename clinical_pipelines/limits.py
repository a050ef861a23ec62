"""Resource limits on what a source may send, each with its own quarantine reason.

Every limit is configuration (environment variables, a contract: keep the names) and bounds the
memory one item can cost, so a hostile drop cannot take a worker down:

========================================  =========  ===================================================
variable                                  default    exceeded -> quarantine reason
========================================  =========  ===================================================
``CLINICAL_PIPELINES_MAX_DICOM_MB``       1024       a DICOM file larger than this -> ``too_large``
``CLINICAL_PIPELINES_MAX_NOTE_MB``        8          a note file larger than this -> ``too_large``
``CLINICAL_PIPELINES_MAX_TABLE_MB``       256        a table file larger than this -> ``too_large``
``CLINICAL_PIPELINES_MAX_INFLATED_MB``    256        a deflated DICOM dataset inflating past
                                                     min(this, max(64 MiB, 100 x its size)) -> ``inflate_limit``
``CLINICAL_PIPELINES_MAX_PIXEL_MB``       1024       Rows x Columns x Frames x Samples x Bits/8 past this,
                                                     checked before any decode (RLE too) -> ``geometry_too_large``
``CLINICAL_PIPELINES_MAX_NOTE_CHARS``     200000     a longer note -> ``note_too_long``
``CLINICAL_PIPELINES_MAX_TABLE_CELLS``    5000000    rows x columns past this -> ``table_too_large``
``CLINICAL_PIPELINES_NOTES_BATCH``        32         notes de-identified per batch (memory is per batch)
========================================  =========  ===================================================

Object sizes are checked at ingest against the declared size before a byte is read (and again
after sniffing, per modality), and again at validation, so lowering a limit applies to drops
already in the raw zone. DICOM is handled one file at a time; notes in batches; a table is one
item, bounded by its cell count. Pure Python, no Dagster: engines and the CLI read it alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

MiB = 1024 * 1024

ENV_MAX_DICOM_MB = "CLINICAL_PIPELINES_MAX_DICOM_MB"
ENV_MAX_NOTE_MB = "CLINICAL_PIPELINES_MAX_NOTE_MB"
ENV_MAX_TABLE_MB = "CLINICAL_PIPELINES_MAX_TABLE_MB"
ENV_MAX_INFLATED_MB = "CLINICAL_PIPELINES_MAX_INFLATED_MB"
ENV_MAX_PIXEL_MB = "CLINICAL_PIPELINES_MAX_PIXEL_MB"
ENV_MAX_NOTE_CHARS = "CLINICAL_PIPELINES_MAX_NOTE_CHARS"
ENV_MAX_TABLE_CELLS = "CLINICAL_PIPELINES_MAX_TABLE_CELLS"
ENV_NOTES_BATCH = "CLINICAL_PIPELINES_NOTES_BATCH"

TOO_LARGE = "too_large"
INFLATE_LIMIT = "inflate_limit"
GEOMETRY_TOO_LARGE = "geometry_too_large"
NOTE_TOO_LONG = "note_too_long"
TABLE_TOO_LARGE = "table_too_large"


class LimitsError(ValueError):
    """A limit variable does not hold a positive number (the message names the variable)."""


@dataclass(frozen=True)
class Limits:
    """The configured bounds (bytes, characters, cells)."""

    max_dicom_bytes: int = 1024 * MiB
    max_note_bytes: int = 8 * MiB
    max_table_bytes: int = 256 * MiB
    max_inflated_bytes: int = 256 * MiB
    max_pixel_bytes: int = 1024 * MiB
    max_note_chars: int = 200_000
    max_table_cells: int = 5_000_000
    notes_batch: int = 32

    def max_object_bytes(self, modality: str | None) -> int:
        """The size bound of one object of ``modality`` (None: the largest of them, before sniffing)."""
        by_modality = {"dicom": self.max_dicom_bytes, "notes": self.max_note_bytes, "tabular": self.max_table_bytes}
        return by_modality.get(modality or "", max(by_modality.values()))

    def as_env(self) -> dict[str, str]:
        """The limits as the environment variables that set them (whole MiB where the variable is in MB)."""
        out = {}
        for name, attr, scale in _VARIABLES:
            out[name] = str(getattr(self, attr) // scale)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """Read the limit variables (unset: the defaults); a malformed value raises :class:`LimitsError`."""
        env = os.environ if env is None else env
        values: dict[str, int] = {}
        for name, attr, scale in _VARIABLES:
            raw = str(env.get(name, "")).strip()
            if not raw:
                continue
            try:
                number = float(raw)
            except ValueError:
                number = -1.0
            if not number > 0 or number != number or number > 2**50:
                raise LimitsError(f"{name} must be a positive number, got {raw[:32]!r}; unset it for the default")
            values[attr] = max(1, int(number * scale))
        return cls(**values)


_VARIABLES = (
    (ENV_MAX_DICOM_MB, "max_dicom_bytes", MiB),
    (ENV_MAX_NOTE_MB, "max_note_bytes", MiB),
    (ENV_MAX_TABLE_MB, "max_table_bytes", MiB),
    (ENV_MAX_INFLATED_MB, "max_inflated_bytes", MiB),
    (ENV_MAX_PIXEL_MB, "max_pixel_bytes", MiB),
    (ENV_MAX_NOTE_CHARS, "max_note_chars", 1),
    (ENV_MAX_TABLE_CELLS, "max_table_cells", 1),
    (ENV_NOTES_BATCH, "notes_batch", 1),
)
assert {attr for _, attr, _ in _VARIABLES} == {f.name for f in fields(Limits)}
