"""Hostile inputs for the hardening tests: deflate bombs, deflated and planted DICOM, measured child processes."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pydicom
import pydicom.filewriter
from pydicom.dataelem import DataElement
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

CLI = str(Path(sys.executable).parent / "clinical-pipelines")


def deflate_bomb(inflated_bytes: int) -> bytes:
    """A Part 10 file, Deflated Explicit VR Little Endian, whose dataset inflates to ``inflated_bytes``.

    Deflate's best ratio is about 1032:1, so 2 GB of zeros take about 2 MB: built by repeating one
    compressed block of zeros (the compressor state carries over), in about a second.
    """
    meta = pydicom.dataset.FileMetaDataset()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    head = io.BytesIO()
    head.write(b"\0" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(head, meta)
    pixels = inflated_bytes - 12
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_RLE)  # fast on zeros, ~1000:1
    body = [compressor.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixels))]
    zeros = b"\0" * (1 << 24)
    for _ in range(pixels >> 24):
        body.append(compressor.compress(zeros))
    body.append(compressor.compress(b"\0" * (pixels & ((1 << 24) - 1))))
    body.append(compressor.flush())
    return head.getvalue() + b"".join(body)


def deflated(data: bytes) -> bytes:
    """The same DICOM instance re-encoded as Deflated Explicit VR Little Endian."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# Values pydicom warns about (or fails on) when it reads them as their dictionary VR.
PLANTED_INVALID = {
    0x00200013: "QXJOHNSMITHIS",  # Instance Number, IS
    0x00181050: "QXJANEDOEDSV",  # Spatial Resolution, DS
    0x00101010: "QXAGEVALUEZ",  # Patient's Age, AS
    0x00080050: "QXACCESSIONVALUETOOLONGFORSH12345",  # Accession Number, SH (too long)
    0x00280030: "QXPIXELSPACINGNAME",  # Pixel Spacing, DS
    0x0020000D: "QXSTUDYUIDNAME",  # Study Instance UID, UI
    0x00200011: "QXSERIESNUMBERNAME",  # Series Number, IS
}


def with_invalid_values(data: bytes, values: dict[int, str] = PLANTED_INVALID) -> bytes:
    """``data`` re-encoded as Implicit VR with ``values`` (text) in elements whose dictionary VR refuses them."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    for tag, value in values.items():
        ds[tag] = DataElement(tag, "LO", value)
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return out.getvalue()


_MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
                  "max_rss_kb": usage.ru_maxrss}))
"""


def run_measured(args: list[str], env: dict[str, str], timeout: int = 600) -> dict:
    """Run ``args`` under a small parent that reports the peak RSS (KiB) of the largest process it waited
    for, children of children included (``RUSAGE_CHILDREN``), with the command's exit status and output."""
    parent = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return json.loads(parent.stdout)
