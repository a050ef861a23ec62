"""Parse a clinical note for validation: UTF-8 text, not binary, not empty."""

from __future__ import annotations

from typing import Any

from clinical_pipelines.validate.dicom import ParseFailure

_ALLOWED_CONTROLS = {"\n", "\r", "\t", "\f"}


def parse_note(data: bytes) -> dict[str, Any] | ParseFailure:
    """Shape of one note (length, lines, control-character ratio), or why it cannot be accepted."""
    if b"\x00" in data:
        return ParseFailure("binary_note", "note contains NUL bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ParseFailure("not_utf8", "note is not valid UTF-8")
    if not text.strip():
        return ParseFailure("empty_note", "note is empty or whitespace only")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in _ALLOWED_CONTROLS)
    return {
        "length_chars": len(text),
        "line_count": text.count("\n") + 1,
        "control_char_ratio": controls / len(text),
    }
