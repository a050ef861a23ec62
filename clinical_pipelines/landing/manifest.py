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
import unicodedata
from dataclasses import dataclass, field

from clinical_pipelines.modalities import DROP_MODALITIES

DROP_MANIFEST = "drop.json"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# A drop.json is refused as a whole (one record) beyond these: they bound what a hostile manifest costs.
MAX_DROP_FILES = 100_000  # configurable: CLINICAL_PIPELINES_MAX_DROP_FILES
MAX_MANIFEST_DEPTH = 32  # objects/arrays inside each other; a real drop.json needs 3
MAX_NUMBER_DIGITS = 20  # a size fits in 19 digits; a 5,000-digit number is refused unparsed
MAX_PATH_BYTES = 1024  # S3's key limit; longer names cannot be a file of the drop on every backend

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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
    """The reason ``path`` cannot name a file inside a drop, or None if it can.

    ``path_escapes_drop``: absolute, drive letters, ``..``, backslashes, NUL (a path that could
    leave the drop on some system). ``unsafe_name``: a name the platform will not carry as a file
    name although it stays inside the drop (control characters, text that is not valid Unicode,
    more than 1,024 UTF-8 bytes); its bytes are still kept in quarantine when the file exists.
    """
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
    try:
        encoded = path.encode("utf-8")  # lone surrogates (JSON "\\udcff") are not text
    except UnicodeEncodeError:
        return "unsafe_name"
    if len(encoded) > MAX_PATH_BYTES or _CONTROL.search(path):
        return "unsafe_name"
    return None


def name_collision_key(path: str) -> str:
    """What two names that a case-insensitive or normalising file system would merge have in common."""
    return unicodedata.normalize("NFC", path).casefold()


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
    if modality is not None and modality not in DROP_MODALITIES:
        return EntryProblem(index, "invalid_modality", f"modality must be one of {', '.join(DROP_MODALITIES)}", path)
    return FileEntry(path=path, size=size, sha256=digest.lower(), modality=modality)  # type: ignore[arg-type]


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise DropManifestError("unreadable_drop_manifest", "drop.json has an object with a duplicate key")
    return doc


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise DropManifestError(
            "unreadable_drop_manifest", f"drop.json has a number longer than {MAX_NUMBER_DIGITS} digits"
        )
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > 2 * MAX_NUMBER_DIGITS:
        raise DropManifestError("unreadable_drop_manifest", "drop.json has an absurdly long number")
    return float(text)


def _no_constant(name: str) -> object:
    raise DropManifestError("unreadable_drop_manifest", "drop.json has NaN or Infinity (not JSON)")


def _depth(doc: object) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_MANIFEST_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def _load(data: bytes) -> object:
    """Strict JSON: UTF-8, no duplicate keys, bounded numbers and nesting; one clear error otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DropManifestError("unreadable_drop_manifest", "drop.json is not UTF-8") from None
    try:
        doc = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_no_constant,
        )
    except DropManifestError:
        raise
    except json.JSONDecodeError as exc:
        raise DropManifestError("unreadable_drop_manifest", f"drop.json is not JSON (line {exc.lineno})") from None
    except RecursionError:
        raise DropManifestError(
            "unreadable_drop_manifest", f"drop.json nests deeper than {MAX_MANIFEST_DEPTH} levels"
        ) from None
    except ValueError:  # int() past Python's digit limit, and the like
        raise DropManifestError("unreadable_drop_manifest", "drop.json has a value that cannot be read") from None
    if _depth(doc) > MAX_MANIFEST_DEPTH:
        raise DropManifestError("unreadable_drop_manifest", f"drop.json nests deeper than {MAX_MANIFEST_DEPTH} levels")
    return doc


def parse_drop_manifest(data: bytes, *, source: str, drop_id: str, max_files: int = MAX_DROP_FILES) -> DropManifest:
    """Parse ``drop.json`` bytes found at ``landing/<source>/<drop_id>/``.

    Raises :class:`DropManifestError` when the drop as a whole cannot be
    trusted (not strict JSON, wrong shape, more than ``max_files`` entries,
    ids that disagree with its location). Individual bad entries come back in
    ``problems``; duplicates of a path are problems too (the first entry wins),
    and so are paths equal to an earlier one after Unicode normalisation and
    case folding (``name_collision``: a normalising or case-insensitive file
    system would merge them).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise DropManifestError("unreadable_drop_manifest", "drop.json is larger than 64 MiB")
    doc = _load(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise DropManifestError("unreadable_drop_manifest", "drop.json must be an object with a 'files' list")
    if len(doc["files"]) > max_files:
        raise DropManifestError(
            "unreadable_drop_manifest", f"drop.json lists {len(doc['files'])} files, more than the cap of {max_files}"
        )
    if doc.get("drop_id") != drop_id or doc.get("source") != source:
        raise DropManifestError(
            "drop_manifest_mismatch", "drop.json 'source'/'drop_id' do not match the drop's landing folder"
        )
    entries: list[FileEntry] = []
    problems: list[EntryProblem] = []
    seen: set[str] = set()
    folded: set[str] = set()
    for index, raw in enumerate(doc["files"]):
        parsed = _parse_entry(index, raw)
        if isinstance(parsed, EntryProblem):
            problems.append(parsed)
        elif parsed.path in seen:
            problems.append(EntryProblem(index, "duplicate_entry", "path listed twice", None))
        elif name_collision_key(parsed.path) in folded:
            seen.add(parsed.path)
            problems.append(
                EntryProblem(index, "name_collision", "path equals another after Unicode/case folding", parsed.path)
            )
        else:
            seen.add(parsed.path)
            folded.add(name_collision_key(parsed.path))
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
