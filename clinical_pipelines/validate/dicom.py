"""Parse a DICOM Part 10 file for validation: header fields, file meta, and pixel data consistency."""

from __future__ import annotations

import datetime
import io
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import RawDataElement

from clinical_pipelines import pydicom_quiet
from clinical_pipelines.limits import GEOMETRY_TOO_LARGE, INFLATE_LIMIT, Limits

pydicom_quiet.configure()  # no value read from a file reaches a warning or a log

# Transfer syntaxes the platform handles end to end: pydicom reads and decodes them with no
# extra codec package (de-identification copies pixel bytes; training decodes them).
SUPPORTED_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
_ENCAPSULATED = {"1.2.840.10008.1.2.5"}
# Storage SOP classes whose instances must carry pixel data (CT, MR, CR, DX, MG, US, PT, NM, XA, SC...).
_IMAGE_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.",)
_NON_IMAGE_SOP = {"1.2.840.10008.5.1.4.1.1.88", "1.2.840.10008.5.1.4.1.1.104", "1.2.840.10008.5.1.4.1.1.66"}


@dataclass(frozen=True)
class ParseFailure:
    """Why an item could not even be parsed: a quarantine reason and a detail with no values."""

    reason: str
    detail: str


def _requires_pixels(sop_class_uid: str) -> bool:
    """Whether instances of this storage SOP class are images (Pixel Data required).

    A class pydicom's UID dictionary names is an image when its name says so ("CT Image Storage");
    waveforms, structured reports, RT plans, presentation states... are not. A storage class the
    dictionary does not know is judged as an image unless it is one of the known non-image families.
    """
    from pydicom.uid import UID_dictionary

    known = UID_dictionary.get(sop_class_uid)
    if known is not None and sop_class_uid.startswith(_IMAGE_SOP_PREFIXES):
        return "Image Storage" in known[0]
    return sop_class_uid.startswith(_IMAGE_SOP_PREFIXES) and not any(
        sop_class_uid.startswith(p) for p in _NON_IMAGE_SOP
    )


_UNDEFINED_LENGTH = 0xFFFFFFFF
REQUIRED_ATTRIBUTES = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Modality")
_COLUMN_OF = {
    "SOPInstanceUID": "sop_instance_uid", "StudyInstanceUID": "study_instance_uid",
    "SeriesInstanceUID": "series_instance_uid", "SOPClassUID": "sop_class_uid", "Modality": "modality",
}  # fmt: skip
_IMPLICIT = "1.2.840.10008.1.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
HEADER_SCAN_BYTES = 16 * 1024
HEADER_PREFIX_BYTES = 64 * 1024  # one envelope chunk: holds the header of nearly every DICOM file


def _elements_end(ds: Any) -> int | None:
    """Byte offset where the last top-level element ends, or None if a value was cut short.

    pydicom stops quietly at end of file; comparing this offset with the file size
    is what tells a complete file from a cut one.
    """
    end = 0
    for element in ds._dict.values():  # raw elements: nothing decoded, no values copied
        if type(element) is not RawDataElement:
            continue
        length, value, tell = element.length, element.value, element.value_tell
        if length == _UNDEFINED_LENGTH:  # a sequence closed by an 8-byte delimiter item
            end = max(end, tell + len(value or b"") + 8)
        else:
            if value is not None and len(value) < length:
                return None
            end = max(end, tell + length)
    return end


_LONG_LENGTH_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN", b"UT", b"UC", b"UR", b"SQ"}


def _pixel_element_at(data: bytes, offset: int, implicit: bool) -> tuple[int, int] | None:
    """(value offset, declared length) of a Pixel Data element header at ``offset``, if one is there."""
    if len(data) < offset + 12 or struct.unpack_from("<HH", data, offset) != (0x7FE0, 0x0010):
        return None
    if implicit:
        return offset + 8, struct.unpack_from("<I", data, offset + 4)[0]
    if data[offset + 4 : offset + 6] in _LONG_LENGTH_VRS:
        return offset + 12, struct.unpack_from("<I", data, offset + 8)[0]
    return offset + 8, struct.unpack_from("<H", data, offset + 6)[0]


_CUT = ParseFailure("truncated_dicom", "the file ends inside a data element, or holds no data elements")

# Deflated datasets are inflated in memory by pydicom: bound what a small file may expand to.
# Real images deflate a few times over; a file inflating past both bounds is a decompression bomb.
INFLATE_MAX_RATIO = 100
INFLATE_FLOOR_BYTES = 64 * 1024 * 1024  # a deflated file may always inflate to this much
INFLATE_MAX_BYTES = Limits().max_inflated_bytes  # and never beyond this (CLINICAL_PIPELINES_MAX_INFLATED_MB)
_INFLATE_STEP = 4 * 1024 * 1024


def inflate_limit(deflated_bytes: int, cap: int = INFLATE_MAX_BYTES) -> int:
    """The most a deflated dataset of ``deflated_bytes`` may inflate to before it is refused (never past ``cap``)."""
    return min(cap, max(min(cap, INFLATE_FLOOR_BYTES), INFLATE_MAX_RATIO * deflated_bytes))


def syntax_name(uid: str) -> str:
    """A transfer syntax as a bounded, safe name: pydicom's name for a known UID, else a description.

    The UID string comes from the file (attacker-controlled, unbounded): it is never copied into a record.
    """
    from pydicom.uid import UID_dictionary

    known = UID_dictionary.get(uid)
    if known is not None and known[1] == "Transfer Syntax":
        return f"{known[0]} ({uid})"
    if not uid:
        return "missing"
    return f"an unknown UID ({min(len(uid), 9999)} characters)"


def declared_pixel_bytes(rows: int, columns: int, samples: int, frames: int, bits: int) -> int:
    """Bytes the declared geometry decodes to: what a decoder (``pixel_array``, RLE too) would allocate."""
    return math.ceil(max(rows, 0) * max(columns, 0) * max(samples, 1) * max(frames, 1) * max(bits, 0) / 8)


def _inflated_size(data: bytes, cap: int = INFLATE_MAX_BYTES) -> int | ParseFailure | None:
    """Size of a Deflated Explicit VR Little Endian file's inflated dataset, or why it must not be inflated
    (past :func:`inflate_limit`, cut short, corrupt); None when the file is not deflated.

    Inflates in bounded steps and keeps nothing, so a bomb costs at most one step of memory.
    """
    from pydicom.filereader import _read_file_meta_info, read_preamble

    stream = io.BytesIO(data)
    try:
        read_preamble(stream, False)
        meta = _read_file_meta_info(stream)
    except Exception:  # not Part 10, or a broken meta group: dcmread reports it
        return None
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return None
    body = memoryview(data)[stream.tell() :]
    limit = inflate_limit(len(body), cap)
    refused = ParseFailure(INFLATE_LIMIT, f"deflated dataset inflates past {limit} bytes")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, bytes(body)
    try:
        while pending:
            total += len(inflater.decompress(pending, _INFLATE_STEP))
            if total > limit:
                return refused
            pending = inflater.unconsumed_tail
        total += len(inflater.flush())
    except zlib.error:
        return ParseFailure("malformed_dicom", "the deflated dataset is not a valid deflate stream")
    if total > limit:
        return refused
    if not inflater.eof:
        return _CUT  # the deflate stream stops early (bytes after its end, as pydicom, are never read)
    return total


_T = {
    "SOPInstanceUID": 0x00080018, "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
    "SOPClassUID": 0x00080016, "Modality": 0x00080060, "StudyDate": 0x00080020, "PatientID": 0x00100020,
    "Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100, "SamplesPerPixel": 0x00280002,
    "NumberOfFrames": 0x00280008, "PixelData": 0x7FE00010,
}  # fmt: skip


def _text(ds: Any, name: str) -> str:
    """A string value read from the raw element (no pydicom value conversion: the hot path)."""
    element = ds.get_item(_T[name])
    value = getattr(element, "value", None)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ")
    return "" if value is None else str(value).strip()


def _uint(ds: Any, name: str, default: int) -> int:
    """An unsigned short (US) or integer string (IS) value read from the raw element."""
    element = ds.get_item(_T[name])
    value = getattr(element, "value", None)
    if value is None or value == b"":
        return default
    if isinstance(value, bytes):
        if getattr(element, "VR", None) == "IS" or name == "NumberOfFrames":
            return int(value.decode("ascii").strip("\x00 ") or default)
        return int.from_bytes(value[:2], "little")
    return int(value)


def _date(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, "%Y%m%d") if len(text) == 8 else None
    except ValueError:
        return None


def read_whole(data: bytes) -> Any | None:
    """pydicom's reading of all of ``data`` (pixel data included, values left raw), to be judged by
    :func:`parse_dicom` and then de-identified without reading the file twice; None when ``data`` names
    the deflated transfer syntax (its inflated size must be judged before anything inflates it) or
    pydicom cannot read it (:func:`parse_dicom` then says why)."""
    if _DEFLATED.encode() in data[:HEADER_SCAN_BYTES]:
        return None
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception:  # parse_dicom reads it again and names the reason
        return None


def parse_dicom(
    data: bytes, size: int | None = None, *, limits: Limits | None = None, dataset: Any | None = None
) -> dict[str, Any] | ParseFailure:
    """Header fields of one DICOM file (no pixel values), or why it cannot be accepted.

    ``data`` may be just the start of a file of ``size`` bytes that holds its header: values
    past the end (pixel data) are then judged by their declared lengths. A header cut by the
    prefix reads as ``truncated_dicom``: the caller retries with the whole file.

    Checks: Part 10 preamble and file meta, a deflated dataset that inflates within
    :func:`inflate_limit` (else ``inflate_limit``), a supported transfer syntax, and
    for native (uncompressed) pixel data a length equal to
    rows x columns x samples x frames x bits allocated / 8 (rounded up to even). The declared
    geometry is bounded by ``limits.max_pixel_bytes`` for every syntax, RLE included, before
    anything is decoded (``geometry_too_large``); the inflated size by ``limits.max_inflated_bytes``.

    ``dataset``: :func:`read_whole`'s reading of all of ``data``, when the caller has one; it is judged
    instead of reading ``data`` again, and left as it was (values are read raw, never converted).
    """
    limits = limits or Limits()
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = len(data) if size is None else size
    partial = len(data) < size
    inflated = None
    if _DEFLATED.encode() in data[:HEADER_SCAN_BYTES]:  # the file meta names the transfer syntax near the start
        if partial:
            return _CUT  # a deflated header cannot be read from a prefix: the caller reads it all
        inflated = _inflated_size(data, limits.max_inflated_bytes)
        if isinstance(inflated, ParseFailure):
            return inflated
    try:
        ds = (
            dataset
            if dataset is not None and not partial
            else pydicom.dcmread(io.BytesIO(data), stop_before_pixels=partial)
        )
    except InvalidDicomError:
        return ParseFailure("not_dicom", "no DICOM Part 10 preamble/file meta")
    except Exception as exc:  # pydicom raises many types on corrupt input; messages may quote values
        if partial:
            return _CUT  # an element cut by the prefix reads as corrupt: judge the whole file instead
        return ParseFailure("malformed_dicom", f"pydicom could not read the file ({type(exc).__name__})")
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    end = _elements_end(ds)
    if end is None or not ds._dict or (partial and (end > len(data) or syntax == _DEFLATED)):
        return _CUT  # for a prefix: the header runs past it (or is deflated); the caller reads it all
    pixel_length: int | None = None
    if partial:  # pixel data was not read: find its element header right after the last element
        located = _pixel_element_at(data, end, implicit=syntax == _IMPLICIT)
        if located is not None:
            value_offset, pixel_length = located
            end = value_offset + pixel_length
    elif (pixels := ds.get_item(_T["PixelData"])) is not None:
        pixel_length = pixels.length if isinstance(getattr(pixels, "length", None), int) else len(pixels.value)
    if end != (size if inflated is None else inflated):  # a deflated dataset's offsets count in its inflated form
        return _CUT
    if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        return ParseFailure("unsupported_transfer_syntax", f"transfer syntax {syntax_name(syntax)} is not supported")
    sop_class = _text(ds, "SOPClassUID") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    if pixel_length is None and _requires_pixels(sop_class):
        return ParseFailure("missing_pixel_data", "an image storage instance without Pixel Data")
    try:
        rows, columns = _uint(ds, "Rows", 0), _uint(ds, "Columns", 0)
        bits, samples = _uint(ds, "BitsAllocated", 0), _uint(ds, "SamplesPerPixel", 1)
        frames = _uint(ds, "NumberOfFrames", 1)
    except (TypeError, ValueError, UnicodeDecodeError):
        return ParseFailure("malformed_dicom", "image geometry attributes are not integers")
    declared = declared_pixel_bytes(rows, columns, samples, frames, bits)
    if pixel_length is not None and declared > limits.max_pixel_bytes:
        return ParseFailure(
            GEOMETRY_TOO_LARGE,
            f"declared geometry decodes to {declared} bytes; the limit is {limits.max_pixel_bytes} "
            "(CLINICAL_PIPELINES_MAX_PIXEL_MB)",
        )
    if pixel_length is not None and syntax not in _ENCAPSULATED:
        expected = math.ceil(rows * columns * samples * frames * bits / 8)
        expected += expected % 2
        if pixel_length != expected:
            return ParseFailure(
                "pixel_length_mismatch", f"pixel data is {pixel_length} bytes; geometry implies {expected}"
            )
    header = {
        "sop_instance_uid": _text(ds, "SOPInstanceUID") or None,
        "study_instance_uid": _text(ds, "StudyInstanceUID") or None,
        "series_instance_uid": _text(ds, "SeriesInstanceUID") or None,
        "sop_class_uid": sop_class or None,
        "modality": _text(ds, "Modality") or None,
        "transfer_syntax": syntax,
        "rows": rows,
        "columns": columns,
        "bits_allocated": bits,
        "samples_per_pixel": samples,
        "number_of_frames": frames,
        "has_pixel_data": pixel_length is not None,
        "study_date": _date(_text(ds, "StudyDate")),
        "patient_id_present": bool(_text(ds, "PatientID")),
    }
    header["missing_required_attributes"] = " ".join(
        name for name in REQUIRED_ATTRIBUTES if not header[_COLUMN_OF[name]]
    )
    return header
