"""The quarantine zone: rejected items kept (encrypted) with a machine-readable reason.

Each item is two objects under its drop's quarantine folder:
``<item>.json`` (the reason record, no PHI: reason code, hashes, sizes) and
``<item>.bin`` (the original bytes, envelope-encrypted, when there were any).
The item's original path, which may itself carry PHI, is kept only encrypted
inside the record.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.envelope import (
    DecryptingReader,
    EncryptingReader,
    decrypt_bytes,
    encrypt_bytes,
)
from clinical_pipelines.storage.hashing import HashingReader
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import quarantine_prefix, short_hash

# Machine-readable reasons. Stable strings: tools downstream match on them.
REASONS = {
    "unreadable_drop_manifest": "drop.json is missing required structure or is not UTF-8 JSON",
    "drop_manifest_mismatch": "drop.json names a different source or drop id than its folder",
    "unsafe_name": "source or drop id is not [A-Za-z0-9._-]{1,128} (or is a dot path)",
    "path_escapes_drop": "a listed path is absolute, contains '..', or is a symlink",
    "missing_file": "a listed file is not in the drop",
    "size_mismatch": "the file's size differs from drop.json (truncated or padded upload)",
    "sha256_mismatch": "the file's sha256 differs from drop.json (corrupted upload)",
    "invalid_entry": "a drop.json file entry lacks a valid path, size or sha256",
    "invalid_modality": "a drop.json modality override is not dicom, notes or tabular",
    "duplicate_entry": "drop.json lists the same path twice",
    "unlisted_file": "a file in the drop folder is not listed in drop.json",
    "unrecognised_content": "the content is neither DICOM, delimited text nor UTF-8 text",
    "stale_incomplete_drop": "the drop never received its drop.json before the stale timeout",
    # validated stage
    "not_dicom": "no DICOM Part 10 preamble / file meta",
    "malformed_dicom": "pydicom could not read the file (corrupt structure)",
    "truncated_dicom": "the DICOM file ends inside a data element (truncated upload or copy)",
    "inflate_limit": "a deflated DICOM dataset that would inflate past the size bound (decompression bomb)",
    "unsupported_transfer_syntax": "the transfer syntax is not one the platform handles",
    "missing_pixel_data": "an image storage instance without Pixel Data",
    "pixel_length_mismatch": "Pixel Data length disagrees with rows x columns x bits x frames",
    "binary_note": "a note holding binary content",
    "not_utf8": "a note that is not valid UTF-8",
    "empty_note": "an empty or whitespace-only note",
    "bad_encoding": "a table that is not UTF-8",
    "empty_table": "a table with no header row",
    "wrong_delimiter": "a table that is not comma-separated",
    "unknown_table_schema": "a table whose header matches no declared schema",
    "missing_columns": "a table lacking required columns of its schema",
    "table_parse_error": "pandas could not parse the table",
    "validation_failed": "the item failed per-item expectations of its suite",
    "rejected_rows": "table rows that failed per-item expectations (the rest of the table went on)",
    # de-identification stage
    "burned_in_annotation": "pixel data may carry burned-in text: routed to review, never promoted",
    "malformed_date": "a date value that cannot be shifted (not YYYYMMDD)",
    "unwritable_dicom": "the de-identified instance could not be written",
    "sequence_too_deep": "sequences nested deeper than any real IOD needs (32 levels): not walked",
    "deid_failed": "the profile could not be applied to a value (odd VR or unconvertible value)",
    "pixel_cleaning_unsupported": "pixel cleaning was asked for, but the pixel data is compressed or unusual",
    "residual_phi": "an identifier of the original was still found after de-identification",
    # limits and faults (any stage; see clinical_pipelines/limits.py)
    "too_large": "the object is larger than its modality's size limit (CLINICAL_PIPELINES_MAX_<MODALITY>_MB)",
    "geometry_too_large": "declared Rows x Columns x Frames x Samples x Bits exceeds CLINICAL_PIPELINES_MAX_PIXEL_MB",
    "note_too_long": "a note longer than CLINICAL_PIPELINES_MAX_NOTE_CHARS",
    "table_too_large": "a table with more cells than CLINICAL_PIPELINES_MAX_TABLE_CELLS",
    "tampered_object": "a stored object failed authentication (altered, truncated, swapped or renamed)",
    "engine_error": "an unexpected error on this item (its exception type only); the rest of the drop went on",
}


def _path_context(item_id: str) -> bytes:
    """AAD of a record's encrypted path: bound to its item (a path moved to another record fails)."""
    return b"clinical-pipelines/envelope/2\x00quarantine-path\x00" + item_id.encode()


@dataclass(frozen=True)
class QuarantineRecord:
    """Why an item was quarantined. Every field is safe to show (no PHI)."""

    item_id: str
    reason: str
    detail: str
    stage: str
    source: str
    drop_id: str
    path_sha256: str | None = None
    size_declared: int | None = None
    size_actual: int | None = None
    sha256_declared: str | None = None
    sha256_actual: str | None = None
    bytes_key: str | None = None
    key_id: str | None = None
    path_enc: str | None = None  # the original path, envelope-encrypted, base64
    at: float = 0.0

    def public(self) -> dict[str, object]:
        """The record without the encrypted path: what may go to logs and metadata."""
        return {k: v for k, v in asdict(self).items() if k != "path_enc"}


class Quarantine:
    """Writes and reads quarantined items for one object store and key ring."""

    def __init__(self, store: ObjectStore, keyring: KeyRing) -> None:
        self.store = store
        self.keyring = keyring

    def put(
        self,
        folder: str | None = None,
        *,
        reason: str,
        detail: str,
        stage: str,
        source: str,
        drop_id: str,
        path: str | None,
        content: BinaryIO | None = None,
        item_id: str | None = None,
        size_declared: int | None = None,
        sha256_declared: str | None = None,
    ) -> QuarantineRecord:
        """Quarantine one item under ``folder`` (default: the drop's ``quarantine/<source>/<drop_id>/``).

        ``content`` (the original bytes, streamed) is stored encrypted; its size
        and sha256 are measured on the way. Re-quarantining the same item
        overwrites it with the same content, so re-runs are idempotent.
        """
        if reason not in REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}")
        folder = folder or quarantine_prefix(source, drop_id)
        item = item_id or (short_hash(path) if path is not None else short_hash(f"{reason}:{detail}"))
        bytes_key = key_id = sha_actual = None
        size_actual = None
        if content is not None:
            hashing = HashingReader(content)
            bytes_key = f"{folder}{item}.bin"
            encrypting = EncryptingReader(hashing, self.keyring, context=bytes_key)  # type: ignore[arg-type]
            self.store.put_stream(bytes_key, encrypting)  # type: ignore[arg-type]
            key_id, sha_actual, size_actual = encrypting.key_id, hashing.hexdigest(), hashing.size
        path_enc = (
            base64.b64encode(
                encrypt_bytes(path.encode("utf-8", "surrogateescape"), self.keyring, context=_path_context(item))
            ).decode()
            if path is not None
            else None
        )
        record = QuarantineRecord(
            item_id=item,
            reason=reason,
            detail=detail,
            stage=stage,
            source=source,
            drop_id=drop_id,
            path_sha256=short_hash(path) if path is not None else None,
            size_declared=size_declared,
            size_actual=size_actual,
            sha256_declared=sha256_declared,
            sha256_actual=sha_actual,
            bytes_key=bytes_key,
            key_id=key_id,
            path_enc=path_enc,
            at=time.time(),
        )
        self.store.put_bytes(f"{folder}{item}.json", json.dumps(asdict(record), sort_keys=True).encode())
        return record

    def records(self, prefix: str = "quarantine/") -> Iterator[QuarantineRecord]:
        """Every quarantine record under ``prefix``."""
        for info in self.store.list(prefix):
            if info.key.endswith(".json"):
                yield QuarantineRecord(**json.loads(read_all(self.store, info.key)))

    def original_path(self, record: QuarantineRecord) -> str | None:
        """Decrypt the item's original path (PHI zone access: callers must be authorised)."""
        if record.path_enc is None:
            return None
        blob = base64.b64decode(record.path_enc)
        return decrypt_bytes(blob, self.keyring, context=_path_context(record.item_id)).decode(
            "utf-8", "surrogateescape"
        )

    def open_original(self, record: QuarantineRecord) -> DecryptingReader:
        """Stream the item's original bytes, decrypted."""
        if record.bytes_key is None:
            raise FileNotFoundError(f"quarantine item {record.item_id} kept no bytes ({record.reason})")
        return DecryptingReader(self.store.open_read(record.bytes_key), self.keyring, context=record.bytes_key)


def count_reasons(records: Iterable[QuarantineRecord]) -> dict[str, int]:
    """How many records there are per reason code, sorted by reason."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.reason] = counts.get(record.reason, 0) + 1
    return dict(sorted(counts.items()))
