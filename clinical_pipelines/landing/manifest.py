"""Parse and check a drop's ``drop.json``.

The format is a contract with every source system:
``{"drop_id": "...", "source": "...", "files": [{"path": "dicom/0001.dcm", "size": 524288,
"sha256": "<64 hex>"}]}``; extra keys are allowed, and a file may carry
``"modality"`` (``dicom``, ``notes``, ``tabular``) to override content sniffing.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

DROP_MANIFEST = "drop.json"
MODALITIES = ("dicom", "notes", "tabular")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DropManifestError(ValueError):
    """``drop.json`` is unreadable or breaks the format. Messages never quote file paths."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def is_safe_name(name: str) -> bool:
    """True if ``name`` may be a source or drop id: ``[A-Za-z0-9._-]{1,128}``, and not a dot path.

    Names made only of dots ("." "..") or containing ".." are refused too: they
    are path components with meaning, and Dagster forbids "..." in partition keys.
    """
    return bool(_SAFE_NAME.fullmatch(name)) and ".." not in name and name != "."


@dataclass(frozen=True)
class FileEntry:
    """One file a drop declares."""

    path: str
    size: int
    sha256: str
    modality: str | None = None


@dataclass(frozen=True)
class EntryProblem:
    """A ``files`` entry that cannot be accepted, with a machine-readable reason."""

    index: int
    reason: str
    detail: str
    path: str | None = None  # kept for quarantining the bytes; never put in metadata


@dataclass(frozen=True)
class DropManifest:
    """A parsed ``drop.json``: the acceptable entries and the rejected ones."""

    source: str
    drop_id: str
    entries: tuple[FileEntry, ...]
    problems: tuple[EntryProblem, ...] = field(default=())


def check_relative_path(path: object) -> str | None:
    """The reason ``path`` cannot name a file inside a drop, or None if it can."""
    if not isinstance(path, str) or not path:
        return "invalid_entry"
    if path.startswith("/") or "\\" in path or re.match(r"^[A-Za-z]:", path) or "\x00" in path:
        return "path_escapes_drop"
    normalized = posixpath.normpath(path)
    parts = path.split("/")
    if normalized.startswith("..") or ".." in parts or "." in parts or "" in parts:
        return "path_escapes_drop"
    if path == DROP_MANIFEST:
        return "invalid_entry"
    return None


def _parse_entry(index: int, raw: object) -> FileEntry | EntryProblem:
    if not isinstance(raw, dict):
        return EntryProblem(index, "invalid_entry", "entry is not an object")
    path = raw.get("path")
    bad_path = check_relative_path(path)
    if bad_path:
        return EntryProblem(
            index, bad_path, "path is not a relative path inside the drop", path if isinstance(path, str) else None
        )
    size, digest, modality = raw.get("size"), raw.get("sha256"), raw.get("modality")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return EntryProblem(index, "invalid_entry", "size is not a non-negative integer", path)
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
        return EntryProblem(index, "invalid_entry", "sha256 is not 64 hex digits", path)
    if modality is not None and modality not in MODALITIES:
        return EntryProblem(index, "invalid_modality", f"modality must be one of {', '.join(MODALITIES)}", path)
    return FileEntry(path=path, size=size, sha256=digest.lower(), modality=modality)  # type: ignore[arg-type]


def parse_drop_manifest(data: bytes, *, source: str, drop_id: str) -> DropManifest:
    """Parse ``drop.json`` bytes found at ``landing/<source>/<drop_id>/``.

    Raises :class:`DropManifestError` when the drop as a whole cannot be
    trusted (not JSON, wrong shape, ids that disagree with its location).
    Individual bad entries come back in ``problems``; duplicates of a path are
    problems too (the first entry wins).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise DropManifestError("unreadable_drop_manifest", "drop.json is larger than 64 MiB")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = f"drop.json is not UTF-8 JSON ({type(exc).__name__})"
        raise DropManifestError("unreadable_drop_manifest", detail) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise DropManifestError("unreadable_drop_manifest", "drop.json must be an object with a 'files' list")
    if doc.get("drop_id") != drop_id or doc.get("source") != source:
        raise DropManifestError(
            "drop_manifest_mismatch", "drop.json 'source'/'drop_id' do not match the drop's landing folder"
        )
    entries: list[FileEntry] = []
    problems: list[EntryProblem] = []
    seen: set[str] = set()
    for index, raw in enumerate(doc["files"]):
        parsed = _parse_entry(index, raw)
        if isinstance(parsed, EntryProblem):
            problems.append(parsed)
        elif parsed.path in seen:
            problems.append(EntryProblem(index, "duplicate_entry", "path listed twice", None))
        else:
            seen.add(parsed.path)
            entries.append(parsed)
    return DropManifest(source=source, drop_id=drop_id, entries=tuple(entries), problems=tuple(problems))


def build_drop_manifest(source: str, drop_id: str, files: list[FileEntry]) -> bytes:
    """Serialise a ``drop.json`` for ``files`` (for sources and tests that produce drops)."""
    doc = {
        "drop_id": drop_id,
        "source": source,
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, **({"modality": f.modality} if f.modality else {})}
            for f in sorted(files, key=lambda f: f.path)
        ],
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
