"""The byte-copying DICOM writer: a de-identified dataset serialised by copying every run of untouched
elements straight from the original file's bytes, and encoding only what the profile changed.

Pixel data and every other kept element are one slice copy per contiguous run (nested sequence items
too); pydicom's writer is used only for changed values that are not plain ASCII text. Used by
:class:`clinical_pipelines.deid.dicom.DicomDeidentifier`; for a transfer syntax other than little endian
implicit/explicit VR it returns None and the caller uses pydicom's writer for everything.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# Set by the walker on each sequence item it visits: where the item's recorded element positions count
# from in the file (pydicom gives positions inside a defined-length sequence relative to its value).
ITEM_BASE = "_deid_file_offset"

_LITTLE_ENDIAN_SYNTAXES = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # UID -> implicit VR
_LONG_HEADER_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _raw_span(element: object, data: bytes, implicit: bool, base: int | None = 0) -> tuple[int, int] | None:
    """Byte range of an element never touched since reading (header included), if it can be copied as is.

    ``base`` is where the element's recorded position counts from (None: unknown, never copied). The
    bytes found there must be the element's own tag, VR, length and value, so a copy is always exactly
    what re-encoding the element would write.
    """
    if type(element) is not RawDataElement or base is None:
        return None
    length, value = element.length, element.value  # type: ignore[attr-defined]
    if length == 0xFFFFFFFF or value is None or len(value) != length:
        return None
    vr = element.VR  # type: ignore[attr-defined]
    tell = base + element.value_tell  # type: ignore[attr-defined]
    header = 8 if implicit or vr not in _LONG_HEADER_VRS else 12
    start, end = tell - header, tell + length
    tag = int(element.tag)  # type: ignore[attr-defined]
    if start < 0 or end > len(data):
        return None
    if implicit:
        expected = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    elif header == 12:
        expected = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, str(vr).encode(), 0, length)
    else:
        expected = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, str(vr).encode(), length)
    if not (data.startswith(expected, start) and data.startswith(value, tell)):  # compared in place, no copy
        return None
    return start, end


_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
# File meta elements kept: what reading the file needs, and the writing implementation's identity. The
# others name sending/receiving systems, carry private data, or are unknown: not needed to read the file.
META_KEPT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})
_META_REQUIRED = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def write_passthrough(ds: Dataset, data: bytes) -> bytes | None:
    """Serialise ``ds``, copying every run of untouched elements straight from the original bytes.

    Only elements the profile changed go through pydicom's writer; pixel data and everything else
    kept is one slice copy per contiguous run, in nested sequence items too (walked sequences are
    written with undefined lengths, as pydicom's writer does). The preamble is zeroed (it can hold
    anything) and the file meta group is rebuilt. Returns None for transfer syntaxes other than
    little endian implicit/explicit VR, or a file meta lacking a required element (the caller then
    uses pydicom's writer for everything).
    """
    from pydicom.filebase import DicomBytesIO

    data = data if isinstance(data, bytes) else bytes(data)  # compared in place with bytes.startswith
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if syntax not in _LITTLE_ENDIAN_SYNTAXES or ds.original_character_set != ds._character_set:
        return None
    assert meta is not None
    if any(tag not in meta for tag in _META_REQUIRED):
        return None
    implicit = _LITTLE_ENDIAN_SYNTAXES[syntax]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    _write_elements(fp, meta, data, False, "iso8859", 0, skip_group_length=True)
    group = fp.getvalue()
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    fp.write(b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(group)) + group)
    if not _write_elements(fp, ds, data, implicit, ds.get("SpecificCharacterSet", "iso8859"), 0):
        return None
    return fp.getvalue()


def _write_elements(
    fp: Any,
    ds: Dataset,
    data: bytes,
    implicit: bool,
    encoding: Any,
    base: int | None,
    *,
    skip_group_length: bool = False,
) -> bool:
    """Write ``ds``'s elements in tag order; False when a nested item switches character set.

    ``base``: where the recorded positions of ``ds``'s elements count from in ``data`` (None: unknown).
    """
    view = memoryview(data)
    from pydicom.filewriter import write_data_element

    run: list[int] = []  # [start, end] of the pending run of untouched bytes
    for tag in sorted(ds.keys()):
        if tag.element == 0 and (tag.group > 6 or skip_group_length):
            continue  # group lengths: retired (PS3.5 7.2), or recomputed by the caller
        element = ds.get_item(tag)
        span = _raw_span(element, data, implicit, base)
        if span is not None and run and run[1] == span[0]:
            run[1] = span[1]
            continue
        if run:
            fp.write(view[run[0] : run[1]])
            run = []
        if span is not None:
            run = [span[0], span[1]]
        elif type(element) is DataElement and element.VR == "SQ" and element.value:
            fp.write(struct.pack("<HH", tag.group, tag.element))
            fp.write(struct.pack("<I", 0xFFFFFFFF) if implicit else b"SQ\x00\x00\xff\xff\xff\xff")
            for item in element.value:
                if "SpecificCharacterSet" in item:
                    return False
                fp.write(_ITEM)
                if not _write_elements(fp, item, data, implicit, encoding, getattr(item, ITEM_BASE, None)):
                    return False
                fp.write(_ITEM_END)
            fp.write(_SEQUENCE_END)
        else:
            encoded = _encode_ascii(element, implicit) if type(element) is DataElement else None
            if encoded is not None:
                fp.write(encoded)
            else:
                write_data_element(fp, ds[tag], encoding)
    if run:
        fp.write(view[run[0] : run[1]])
    return True


# Text VRs whose ASCII values encode the same in every DICOM character set (the default repertoire).
_ASCII_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def _encode_ascii(element: DataElement, implicit: bool) -> bytes | None:
    """The encoded element (header and value) for an ASCII text value, or None to leave it to pydicom.

    The profile writes dozens of such values per file (UIDs, shifted dates, pseudonyms, empties);
    encoding them here costs a fraction of pydicom's general writer.
    """
    vr = element.VR
    if vr not in _ASCII_VRS:
        return None
    value = element._value  # the stored value, without triggering a conversion
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (list, MultiValue)) and all(isinstance(v, str) for v in value):
        text = "\\".join(value)
    else:
        return None
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "
    tag = element.tag
    if implicit:
        header = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw))
    elif vr in _LONG_HEADER_VRS:
        header = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(raw))
    elif len(raw) > 0xFFFF:
        return None
    else:
        header = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw))
    return header + raw
