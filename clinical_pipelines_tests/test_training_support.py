"""Test helpers (no tests here): tiny curated objects put into a real store, and a manifest describing them."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from clinical_pipelines.curate.splits import assign_split
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.zones import curated_object_key

RATIOS = {"train": "0.6", "val": "0.2", "test": "0.2"}


def tiny_dicom(pixels: np.ndarray) -> bytes:
    """An uncompressed little-endian CT Part-10 file carrying ``pixels`` (int16)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[pixels.tobytes().hex()[:64]])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.PixelData = pixels.astype("<i2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def put_corpus(
    store: ObjectStore,
    *,
    dataset: str = "demo",
    patients: int = 12,
    images_per_patient: int = 3,
    side: int = 16,
    seed: int = 0,
    with_notes: bool = True,
    with_labs: bool = True,
) -> dict[str, Any]:
    """Put de-identified-like objects for ``patients`` into ``store``; return their manifest (a dict).

    Splits come from :func:`assign_split` (seed ``seed``); each image has distinct pixels.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def put(data: bytes, modality: str, patient: str, label: str | None, attributes: dict[str, str]) -> None:
        sha = hashlib.sha256(data).hexdigest()
        key = curated_object_key(sha)
        store.put_bytes(key, data)
        rows.append(
            {"key": key, "sha256": sha, "size": len(data), "modality": modality, "patient_id": patient,
             "split": assign_split(patient, RATIOS, seed), "label": label, "attributes": attributes}
        )  # fmt: skip

    for p in range(patients):
        patient = f"PSN-{p:04d}"
        label = "positive" if p % 3 == 0 else "negative"
        for i in range(images_per_patient):
            pixels = rng.integers(-1000, 2000, size=(side, side), dtype=np.int16)
            pixels[0, 0] = p * 100 + i
            put(tiny_dicom(pixels), "dicom", patient, label, {"series": str(i)})
        if with_notes:
            put(f"Note for {patient}: stable, follow up.\n".encode(), "notes", patient, label, {})
        if with_labs:
            put(f"patient_id,test,value\n{patient},hb,{12 + p % 4}.5\n".encode(), "labs", patient, None, {})
    rows.sort(key=lambda r: (r["patient_id"], r["key"]))
    return {
        "schema": "clinical-pipelines.manifest/1", "dataset": dataset, "version": 1,
        "parents": {"drops": [], "previous": None}, "spec_sha256": "0" * 64, "code_version": "test",
        "deid": {"profile": "test", "version": "1", "options": []},
        "split": {"seed": seed, "ratios": RATIOS}, "objects": rows,
    }  # fmt: skip


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """Canonical JSON of ``manifest`` (sorted keys, compact)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode_dicom(data: bytes) -> np.ndarray:
    """The pixels pydicom decodes from a Part-10 file."""
    return pydicom.dcmread(io.BytesIO(data)).pixel_array
