"""Tell a file's modality from its first bytes: DICOM preamble, CSV header, or text."""

from __future__ import annotations

import csv
import re

SNIFF_BYTES = 64 * 1024
_TABULAR_SUFFIXES = (".csv", ".tsv")
_COLUMN_NAME = re.compile(r"[A-Za-z_][\w.\-/()%#]{0,63}")
_NOTE_SUFFIXES = (".txt", ".md", ".note", ".rtf")


def sniff_modality(head: bytes, path: str) -> str | None:
    """``dicom``, ``tabular`` or ``notes`` for a file starting with ``head``; None if none fits.

    - DICOM Part 10: "DICM" at offset 128.
    - Tabular: UTF-8 text whose first lines split into the same number (>= 2) of
      fields on one delimiter, or a .csv/.tsv name.
    - Notes: any other UTF-8 text without NUL bytes.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut at the sniff boundary is fine
            return None
        text = head[: exc.start].decode("utf-8")
    if not text.strip():
        return None
    if path.lower().endswith(_NOTE_SUFFIXES):
        return "notes"
    if path.lower().endswith(_TABULAR_SUFFIXES) or _looks_delimited(text):
        return "tabular"
    return "notes"


def modality_by_name(path: str) -> str | None:
    """The modality a file's name suggests, before any byte is read: ``tabular`` for .csv/.tsv, ``notes`` for
    note suffixes, ``dicom`` for .dcm or no suffix (as PACS exports name them), None otherwise. A guess for
    planning only: what a file is is decided by :func:`sniff_modality` on its bytes."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(_TABULAR_SUFFIXES):
        return "tabular"
    if name.endswith(_NOTE_SUFFIXES):
        return "notes"
    if name.endswith(".dcm") or "." not in name:
        return "dicom"
    return None


def _looks_delimited(text: str) -> bool:
    lines = [line for line in text.splitlines()[:6] if line.strip()]
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",\t;|")
    except csv.Error:
        return False
    rows = list(csv.reader(lines, dialect))
    widths = {len(row) for row in rows}
    # Without a .csv name, a header must look like column identifiers (no spaces):
    # prose with commas ("Seen today, doing well.") would otherwise pass as CSV.
    header_is_names = all(_COLUMN_NAME.fullmatch(cell.strip()) for cell in rows[0])
    return len(widths) == 1 and widths.pop() >= 2 and header_is_names
