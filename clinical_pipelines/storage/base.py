"""The object-store interface every zone is written through, and its errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

Verify = Callable[[], None]

# Keys are POSIX-style, relative, with no empty, "." or ".." segments. Zones
# are the first segment ("landing/", "raw/", ...).
_SEGMENT_FORBIDDEN = re.compile(r"[\x00-\x1f\\]")
_FOREIGN_FORBIDDEN = re.compile(r"\x00")

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


class StoreError(Exception):
    """Base class of object-store errors."""


class ObjectNotFound(StoreError):
    """The key does not exist."""


class ObjectAlreadyExists(StoreError):
    """A write-once put found the key already present."""


class UnsafeKey(StoreError):
    """The key could escape the store root, or names a symlink or other non-regular file."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a head says about one object."""

    key: str
    size: int
    last_modified: float  # POSIX seconds
    etag: str = ""


def validate_key(key: str, *, foreign: bool = False) -> str:
    """Return ``key`` unchanged if it is a safe relative object key, else raise :class:`UnsafeKey`.

    Safe means: non-empty, relative, '/'-separated, no empty / '.' / '..' segment,
    no control characters or backslashes. Keys we write are always held to that.

    ``foreign=True`` is for reading, listing and removing keys a source chose (landing):
    control characters, backslashes and bytes that are not UTF-8 are only characters there,
    so such a key is allowed as long as it cannot leave its folder (no NUL, no empty, '.' or
    '..' segment, not absolute). Without this, one badly named folder would make every
    scan of landing fail before the folder could be quarantined.
    """
    if not key or key.startswith("/"):
        raise UnsafeKey("object key must be relative and non-empty")
    forbidden = _FOREIGN_FORBIDDEN if foreign else _SEGMENT_FORBIDDEN
    for segment in key.split("/"):
        if segment in ("", ".", "..") or forbidden.search(segment):
            raise UnsafeKey("object key has an empty, '.', '..' or control-character segment")
    return key


def join_key(*parts: str) -> str:
    """Join key parts with '/', dropping empty parts and stray slashes at the joints."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key/value store of immutable-ish byte objects, streamed in chunks.

    Implementations: :class:`~clinical_pipelines.storage.local.LocalObjectStore` and
    :class:`~clinical_pipelines.storage.s3.S3ObjectStore`.
    """

    url: str

    def open_read(self, key: str) -> BinaryIO:
        """Open an object for streaming reads. Raises ObjectNotFound / UnsafeKey."""
        ...

    def put_stream(
        self, key: str, stream: BinaryIO, *, write_once: bool = False, verify: Verify | None = None
    ) -> ObjectInfo:
        """Stream ``stream`` into ``key`` without holding it in memory.

        The object becomes visible only once complete (no reader ever sees a
        partial object). With ``write_once`` an existing key raises
        :class:`ObjectAlreadyExists` and is left untouched. ``verify`` runs after
        the last byte is read and before the object is published; if it raises,
        nothing is published and the exception propagates.
        """
        ...

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        """Like :meth:`put_stream` for a small in-memory value."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and modification time of ``key``, or None when absent."""
        ...

    def list(self, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (recursively), in key order, fetched page by page."""
        ...

    def list_children(self, prefix: str) -> Iterator[str]:
        """The immediate child "folders" of ``prefix`` (names only, no slashes), in order.

        This is a delimiter listing: it costs one entry per child, not per object below it.
        """
        ...

    def list_files_here(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects directly in the "folder" ``prefix``, not below it (a delimiter listing)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""
        ...


def read_all(store: ObjectStore, key: str) -> bytes:
    """Read a (small) object fully into memory."""
    with store.open_read(key) as fh:
        return fh.read()
