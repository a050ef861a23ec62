"""Object store on a local folder: atomic, write-once capable, symlink-proof."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from clinical_pipelines.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectAlreadyExists,
    ObjectInfo,
    ObjectNotFound,
    UnsafeKey,
    Verify,
    validate_key,
)

_TMP_PREFIX = ".cp-tmp-"


class LocalObjectStore:
    """Objects are files below ``root``; keys are their relative POSIX paths.

    Writes go to a hidden temp file in the target folder and are renamed into
    place, so a reader sees either nothing or the whole object. Write-once puts
    use ``link()``, which fails atomically when the key exists. Keys that
    resolve outside ``root`` or through a symlink are refused.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()
        self._fsync = fsync
        self._safe_dirs: set[str] = set()

    # -- paths ---------------------------------------------------------------
    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.rsplit("/", 1)[-1].startswith(_TMP_PREFIX):
            raise UnsafeKey("object key uses the reserved temp-file prefix")
        return self.root / key

    def _checked_existing(self, key: str) -> Path:
        """The path of an existing regular file for ``key`` that resolves inside root."""
        path = self._path(key)
        real = os.path.realpath(path)
        if real != str(path):
            raise UnsafeKey("object key resolves through a symlink")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        if not stat.S_ISREG(st.st_mode):
            raise (
                ObjectNotFound(key)
                if stat.S_ISDIR(st.st_mode)
                else UnsafeKey("object key names something other than a regular file")
            )
        return path

    # -- reads ---------------------------------------------------------------
    def open_read(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads (no symlinks followed)."""
        path = self._checked_existing(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:  # ELOOP: swapped for a symlink after the check
            raise UnsafeKey("object key resolves through a symlink") from exc
        # Unbuffered: callers read in large chunks, and an 8 MiB buffer per open costs more than
        # reading a typical 0.5 MB DICOM object.
        return os.fdopen(fd, "rb", buffering=0)

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of ``key``, or None if there is no regular file there."""
        try:
            path = self._checked_existing(key)
        except ObjectNotFound:
            return None
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size, last_modified=st.st_mtime)

    def list(self, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in S3 key order."""
        del page_size  # a directory walk has no pages
        folder, _, name_prefix = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if folder:
            validate_key(folder)
        yield from self._walk(base, folder, name_prefix, start_after)

    def _walk(self, folder: Path, folder_key: str, name_prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if e.name.startswith(name_prefix) and not e.name.startswith(_TMP_PREFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        # S3 orders by full key; a folder's keys continue with "/", so sort it as name + "/".
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            key = f"{folder_key}/{entry.name}" if folder_key else entry.name
            if entry.is_dir(follow_symlinks=False):
                if start_after and not (key + "/" > start_after or start_after.startswith(key + "/")):
                    continue
                yield from self._walk(Path(entry.path), key, "", start_after)
            elif entry.is_file(follow_symlinks=False) or entry.is_symlink():
                if key <= start_after:
                    continue
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key=key, size=st.st_size, last_modified=st.st_mtime)

    def list_children(self, prefix: str) -> Iterator[str]:
        """Names of the immediate sub-folders of ``prefix``, sorted."""
        folder = prefix.strip("/")
        base = self.root / validate_key(folder) if folder else self.root
        try:
            with os.scandir(base) as it:
                names = sorted(
                    e.name for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(_TMP_PREFIX)
                )
        except (FileNotFoundError, NotADirectoryError):
            return
        yield from names

    # -- writes --------------------------------------------------------------
    def put_stream(
        self, key: str, stream: BinaryIO, *, write_once: bool = False, verify: Verify | None = None
    ) -> ObjectInfo:
        """Copy ``stream`` into ``key`` atomically; see :class:`ObjectStore`."""
        path = self._path(key)
        if write_once and os.path.lexists(path):
            raise ObjectAlreadyExists(key)
        tmp = path.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        size = 0
        try:
            with self._create_temp(tmp) as out:
                while chunk := stream.read(DEFAULT_CHUNK_SIZE):
                    out.write(chunk)
                    size += len(chunk)
                if self._fsync:
                    os.fsync(out.fileno())
            if verify is not None:
                verify()
            self._publish(tmp, path, key, write_once)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(key=key, size=size, last_modified=path.stat().st_mtime)

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        """Write a small value atomically; see :meth:`put_stream`."""
        import io

        return self.put_stream(key, io.BytesIO(data), write_once=write_once)

    def _create_temp(self, tmp: Path) -> BinaryIO:
        """Create the temp file in a folder known to exist and to resolve inside root.

        Folders are checked once per store (mkdir and realpath cost more than the
        write of a small object on some file systems) and re-checked if one vanished.
        """
        folder = str(tmp.parent)
        if folder not in self._safe_dirs:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            if os.path.realpath(folder) != folder:
                raise UnsafeKey("object key resolves through a symlink")
            self._safe_dirs.add(folder)
        try:
            return open(tmp, "xb", buffering=0)
        except FileNotFoundError:  # removed behind our back: check it again
            self._safe_dirs.discard(folder)
            return self._create_temp(tmp)

    def _publish(self, tmp: Path, path: Path, key: str, write_once: bool) -> None:
        if write_once:
            try:
                os.link(tmp, path)  # atomic: fails if the key appeared meanwhile
            except FileExistsError:
                raise ObjectAlreadyExists(key) from None
        else:
            os.replace(tmp, path)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (a symlink is removed, never followed)."""
        path = self._path(key)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                raise UnsafeKey("object key names a folder")
            path.unlink()
        except FileNotFoundError:
            pass
