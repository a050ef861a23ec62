"""Parse a clinical note for validation: UTF-8 text, not binary, not empty."""

from __future__ import annotations

from typing import Any

from clinical_pipelines.limits import NOTE_TOO_LONG, Limits
from clinical_pipelines.validate.dicom import ParseFailure

_ALLOWED_CONTROLS = {"\n", "\r", "\t", "\f"}


def parse_note(data: bytes, *, limits: Limits | None = None) -> dict[str, Any] | ParseFailure:
    """Shape of one note (length, lines, control-character ratio), or why it cannot be accepted.

    A note longer than ``limits.max_note_chars`` is ``note_too_long`` (judged from its byte count
    before decoding when even 4 bytes per character could not fit).
    """
    max_chars = (limits or Limits()).max_note_chars
    too_long = ParseFailure(
        NOTE_TOO_LONG, f"note is longer than {max_chars} characters (CLINICAL_PIPELINES_MAX_NOTE_CHARS)"
    )
    if len(data) > 4 * max_chars + 3:
        return too_long
    if b"\x00" in data:
        return ParseFailure("binary_note", "note contains NUL bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ParseFailure("not_utf8", "note is not valid UTF-8")
    if not text.strip():
        return ParseFailure("empty_note", "note is empty or whitespace only")
    if len(text) > max_chars:
        return too_long
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in _ALLOWED_CONTROLS)
    return {
        "length_chars": len(text),
        "line_count": text.count("\n") + 1,
        "control_char_ratio": controls / len(text),
    }
