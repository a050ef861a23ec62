"""Turning one curated object into a ready-to-use training sample: decoded pixels, text or table + JSON."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from clinical_pipelines.training.manifest import ObjectRow
from clinical_pipelines.training.tarformat import sample_parts


class ObjectMismatch(ValueError):
    """A curated object's bytes do not match the sha256 its manifest records."""


class SampleError(ValueError):
    """A curated object could not be turned into a sample (names the object, never its content)."""


@dataclass(frozen=True)
class SampleMembers:
    """The files of one sample in a shard: ``{extension: bytes}`` in write order, plus its JSON metadata."""

    key: str
    members: tuple[tuple[str, bytes], ...]
    meta: dict[str, Any]


def sample_key(row: ObjectRow) -> str:
    """The sample's key in shards and index: the object's sha256 (no dots, so WebDataset groups it)."""
    return row.sha256


def _base_meta(row: ObjectRow, dataset: str, version_id: str) -> dict[str, Any]:
    return {
        "key": sample_key(row),
        "dataset": dataset,
        "version_id": version_id,
        "object_key": row.key,
        "object_sha256": row.sha256,
        "modality": row.modality,
        "patient_id": row.patient_id,
        "split": row.split,
        "label": row.label,
        "attributes": dict(row.attributes),
    }


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=(1, 0), allow_pickle=False)
    return out.getvalue()


def _dicom(data: bytes, meta: dict[str, Any], max_pixel_bytes: int | None) -> tuple[tuple[str, bytes], ...]:
    import pydicom

    from clinical_pipelines import pydicom_quiet
    from clinical_pipelines.limits import Limits
    from clinical_pipelines.validate.dicom import declared_pixel_bytes

    pydicom_quiet.configure()
    ds = pydicom.dcmread(io.BytesIO(data), force=False)
    declared = declared_pixel_bytes(
        int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), int(ds.get("SamplesPerPixel", 1) or 1),
        int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("BitsAllocated", 0) or 0),
    )  # fmt: skip
    if max_pixel_bytes is None:
        max_pixel_bytes = Limits.from_env().max_pixel_bytes
    if declared > max_pixel_bytes:  # checked before pixel_array allocates (RLE included)
        raise ValueError(f"declared pixel geometry decodes to {declared} bytes, past CLINICAL_PIPELINES_MAX_PIXEL_MB")
    pixels = np.asarray(ds.pixel_array)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    pixels = np.ascontiguousarray(pixels)
    meta["pixels"] = {
        "member": "npy",
        "dtype": pixels.dtype.str,
        "shape": list(pixels.shape),
        "nbytes": int(pixels.nbytes),
        "rescale_slope": float(getattr(ds, "RescaleSlope", 1) or 1),
        "rescale_intercept": float(getattr(ds, "RescaleIntercept", 0) or 0),
        "photometric_interpretation": str(getattr(ds, "PhotometricInterpretation", "")),
        "dicom_modality": str(getattr(ds, "Modality", "")),
    }
    return (("npy", _npy_bytes(pixels)),)


def _number_or_text(values: list[str]) -> list[Any]:
    try:
        return [float(v) if v.strip() else None for v in values]
    except ValueError:
        return values


def _table(data: bytes, meta: dict[str, Any]) -> tuple[tuple[str, bytes], ...]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    columns, body = (rows[0], rows[1:]) if rows else ([], [])
    by_column = [_number_or_text([r[i] if i < len(r) else "" for r in body]) for i in range(len(columns))]
    meta["table"] = {
        "member": "csv",
        "columns": columns,
        "rows": [list(cells) for cells in zip(*by_column, strict=True)] if columns else [],
    }
    return (("csv", data),)


def build_sample(
    row: ObjectRow, data: bytes, *, dataset: str, version_id: str, max_pixel_bytes: int | None = None
) -> SampleMembers:
    """The sample for ``row`` from its verified bytes ``data``.

    Promises: DICOM pixels are decoded by pydicom and stored as a little-endian, C-contiguous ``.npy``
    (dtype and shape also in the JSON under ``pixels``); notes are kept as UTF-8 ``.txt`` (character
    count under ``text``); CSV tables are kept as ``.csv`` and parsed under ``table`` (numeric columns as
    numbers). The JSON member (``.json``) carries the label, patient, split and attributes. Pixel data
    that would decode past ``max_pixel_bytes`` (default: ``CLINICAL_PIPELINES_MAX_PIXEL_MB``) is refused
    before it is decoded.
    """
    meta = _base_meta(row, dataset, version_id)
    try:
        if row.modality == "dicom":
            payload = _dicom(data, meta, max_pixel_bytes)
        elif row.modality == "notes":
            meta["text"] = {"member": "txt", "encoding": "utf-8", "chars": len(data.decode("utf-8"))}
            payload = (("txt", data),)
        else:
            payload = _table(data, meta)
    except Exception as exc:  # pydicom / codec errors: name the object, not its content
        raise SampleError(f"cannot build a sample from {row.key} ({row.modality}): {type(exc).__name__}") from exc
    encoded = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return SampleMembers(key=sample_key(row), members=(("json", encoded), *payload), meta=meta)


@dataclass(frozen=True)
class EncodedSample:
    """One sample ready to append to a shard: its tar pieces, their total length and sha256, member spans
    counted from the sample's first byte, and its JSON metadata."""

    key: str
    parts: tuple[bytes, ...]
    length: int
    digest: str
    spans: dict[str, tuple[int, int]]
    meta: dict[str, Any]


def encode_sample(
    row: ObjectRow, data: bytes, *, dataset: str, version_id: str, max_pixel_bytes: int | None = None
) -> EncodedSample:
    """Check ``data`` against the manifest's sha256, build its sample and lay it out as tar pieces.

    Promises: raises :class:`ObjectMismatch` (naming the object) when the bytes are not the manifest's;
    the pieces are position-independent (see :func:`~clinical_pipelines.training.tarformat.sample_parts`),
    so this runs in any process and the shard writer only appends.
    """
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise ObjectMismatch(f"object {row.key} does not match the sha256 in the manifest")
    sample = build_sample(row, data, dataset=dataset, version_id=version_id, max_pixel_bytes=max_pixel_bytes)
    parts, length, spans = sample_parts(sample.key, sample.members)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return EncodedSample(sample.key, parts, length, digest.hexdigest(), spans, sample.meta)
