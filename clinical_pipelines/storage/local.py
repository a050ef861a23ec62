"""Object store on a local folder: atomic, write-once capable, symlink-proof."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
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
# Every write goes through one temp folder (hidden from listings by the prefix), so a killed
# run's leftovers are found with one folder scan.
_TMP_DIR = f"{_TMP_PREFIX}work"
# A temp file's name says whether it was already locked when it got that name (see ``_create_temp``).
_BORN_LOCKED = f"{_TMP_PREFIX}L-"
_LOCKED_LATE = f"{_TMP_PREFIX}N-"
_tmpfile_works = [True]  # cleared once this process finds it cannot create unnamed files (see _unnamed_locked_temp)
_PROC_FD = "/proc/self/fd"
# What linking an unnamed file fails with where the system cannot do it (no /proc, a file system or sandbox
# that refuses the link); the caller then names its temp files before locking them.
_CANNOT_NAME = frozenset({errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EACCES})


class _UnnamedFilesUnsupported(Exception):
    """This process cannot give an ``O_TMPFILE`` file a name."""


def _unnamed_locked_temp(tmp: Path) -> BinaryIO | None:
    """``tmp`` created unnamed (``O_TMPFILE``), locked, then named; None (and never again in this process)
    where the file system or system cannot do that."""
    flags = getattr(os, "O_TMPFILE", 0)
    try:
        if not flags:
            raise _UnnamedFilesUnsupported
        try:
            fd = os.open(tmp.parent, flags | os.O_WRONLY, 0o666)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise _UnnamedFilesUnsupported from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _name_unnamed(fd, tmp)
        except BaseException:
            os.close(fd)
            raise
    except _UnnamedFilesUnsupported:
        _tmpfile_works[0] = False
        return None
    return open(fd, "wb", buffering=0, closefd=True)


def _name_unnamed(fd: int, path: Path) -> None:
    """Give the unnamed (``O_TMPFILE``) file open as ``fd`` the name ``path``.

    ``linkat(AT_SYMLINK_FOLLOW)`` of its ``/proc/self/fd`` entry, as open(2) describes (Python's
    ``os.link`` calls plain ``link``, which does not follow that link, unless given a ``src_dir_fd``).
    Raises :class:`_UnnamedFilesUnsupported` where ``/proc`` is absent or the link is refused; any other
    error (the folder removed meanwhile: ``FileNotFoundError``) as it is.
    """
    try:
        proc = os.open(_PROC_FD, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise _UnnamedFilesUnsupported from None
    try:
        os.link(str(fd), path, src_dir_fd=proc, follow_symlinks=True)
    except OSError as exc:
        if exc.errno in _CANNOT_NAME:
            raise _UnnamedFilesUnsupported from None
        raise
    finally:
        os.close(proc)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _load_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


_renameat2 = _load_renameat2() if sys.platform.startswith("linux") else None


def _rename_noreplace(src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (Linux ``renameat2(RENAME_NOREPLACE)``).

    One directory operation instead of ``link`` + ``unlink`` for a write-once publish. Returns False
    where the call or the file system does not support it (the caller then links); raises
    FileExistsError when ``dst`` exists.
    """
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), dst)
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # not supported here: link from now on
        _renameat2 = None
        return False
    raise OSError(err, os.strerror(err), dst)


class LocalObjectStore:
    """Objects are files below ``root``; keys are their relative POSIX paths.

    Writes go to a locked temp file in the store's hidden temp folder and are
    renamed into place, so a reader sees either nothing or the whole object; a
    killed writer's temp file is removed when the store is next opened. Write-once puts
    use ``link()``, which fails atomically when the key exists. Keys that
    resolve outside ``root`` or through a symlink are refused.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()
        self._fsync = fsync
        self._safe_dirs: set[str] = set()
        self._tmp_dir = self.root / _TMP_DIR
        self.swept_temp_files = self.sweep_temp_files()

    # -- paths ---------------------------------------------------------------
    def _path(self, key: str, *, foreign: bool = False) -> Path:
        validate_key(key, foreign=foreign)
        if key.rsplit("/", 1)[-1].startswith(_TMP_PREFIX):
            raise UnsafeKey("object key uses the reserved temp-file prefix")
        return self.root / key

    def _checked_existing(self, key: str) -> Path:
        """The path of an existing regular file for ``key`` that resolves inside root.

        Reads accept foreign keys (names a source chose, see :func:`validate_key`).
        """
        path = self._path(key, foreign=True)
        try:
            st = self._lstat_inside(key)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:  # ENAMETOOLONG and friends: nothing can be stored under such a key
            if exc.errno == errno.ENAMETOOLONG:
                raise ObjectNotFound(key) from None
            raise UnsafeKey(f"object key cannot be examined ({type(exc).__name__})") from None
        if not stat.S_ISREG(st.st_mode):
            raise (
                ObjectNotFound(key)
                if stat.S_ISDIR(st.st_mode)
                else UnsafeKey("object key names something other than a regular file")
            )
        return path

    def _lstat_inside(self, key: str) -> os.stat_result:
        """``lstat`` of the key's file after checking that no folder on its way below root is a symlink.

        The same verdict as comparing ``realpath`` with the path (root is resolved once, keys have no
        '.' or '..' segment, and the last segment is judged by the caller from this ``lstat``), for one
        ``lstat`` per segment below root instead of a walk of the whole absolute path.
        """
        segments = key.split("/")
        folder = str(self.root)
        for segment in segments[:-1]:
            folder = f"{folder}/{segment}"
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                raise UnsafeKey("object key resolves through a symlink")
        st = os.lstat(f"{folder}/{segments[-1]}")
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeKey("object key resolves through a symlink")
        return st

    # -- reads ---------------------------------------------------------------
    def open_read(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads (no symlinks followed)."""
        path = self._checked_existing(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:  # ELOOP: swapped for a symlink after the check; EACCES: unreadable
            raise UnsafeKey("object key resolves through a symlink or cannot be opened") from exc
        # Unbuffered: callers read in large chunks, and an 8 MiB buffer per open costs more than
        # reading a typical 0.5 MB DICOM object.
        return os.fdopen(fd, "rb", buffering=0)

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of ``key``, or None if there is no regular file there."""
        try:
            path = self._checked_existing(key)
        except ObjectNotFound:
            return None
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        return ObjectInfo(key=key, size=st.st_size, last_modified=st.st_mtime)

    def list(self, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in S3 key order.

        Anything that is not a folder is listed (a symlink, a FIFO too: reading it is refused, but
        it is seen, so a landing scan can account for it). The walk is iterative, so a hostile
        folder depth cannot exhaust the interpreter's stack.
        """
        del page_size  # a directory walk has no pages
        folder, _, name_prefix = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if folder:
            validate_key(folder, foreign=True)
        stack = [iter(self._entries(base, name_prefix))]
        folder_keys = [folder]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                folder_keys.pop()
                continue
            key = f"{folder_keys[-1]}/{entry.name}" if folder_keys[-1] else entry.name
            if entry.is_dir(follow_symlinks=False):
                if start_after and not (key + "/" > start_after or start_after.startswith(key + "/")):
                    continue
                stack.append(iter(self._entries(Path(entry.path), "")))
                folder_keys.append(key)
                continue
            if key <= start_after:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            yield ObjectInfo(key=key, size=st.st_size, last_modified=st.st_mtime)

    @staticmethod
    def _entries(folder: Path, name_prefix: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if e.name.startswith(name_prefix) and not e.name.startswith(_TMP_PREFIX)]
        except OSError:  # absent, not a folder, or a path past the system's limit
            return []
        # S3 orders by full key; a folder's keys continue with "/", so sort it as name + "/".
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        return entries

    def list_children(self, prefix: str) -> Iterator[str]:
        """Names of the immediate sub-folders of ``prefix``, sorted."""
        folder = prefix.strip("/")
        base = self.root / validate_key(folder, foreign=True) if folder else self.root
        try:
            with os.scandir(base) as it:
                names = sorted(
                    e.name for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(_TMP_PREFIX)
                )
        except OSError:
            return
        yield from names

    def list_files_here(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects directly in the folder ``prefix`` (not below it), sorted: one folder scan."""
        folder = prefix.strip("/")
        base = self.root / validate_key(folder, foreign=True) if folder else self.root
        for entry in self._entries(base, ""):
            if not entry.is_dir(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield ObjectInfo(
                    key=f"{folder}/{entry.name}" if folder else entry.name, size=st.st_size, last_modified=st.st_mtime
                )

    # -- writes --------------------------------------------------------------
    def put_stream(
        self, key: str, stream: BinaryIO, *, write_once: bool = False, verify: Verify | None = None
    ) -> ObjectInfo:
        """Copy ``stream`` into ``key`` atomically; see :class:`ObjectStore`."""
        path = self._path(key)
        if write_once and os.path.lexists(path):
            raise ObjectAlreadyExists(key)
        self._ensure_folder(self._tmp_dir)
        tmp = self._tmp_dir / f"{_BORN_LOCKED}{secrets.token_hex(8)}"
        size = 0
        try:
            with self._create_temp(tmp) as out:
                while chunk := stream.read(DEFAULT_CHUNK_SIZE):
                    out.write(chunk)
                    size += len(chunk)
                if self._fsync:
                    os.fsync(out.fileno())
                mtime = os.fstat(out.fileno()).st_mtime  # the published file is this inode (a link or rename)
                if verify is not None:
                    verify()
                self._publish_into(tmp, path, key, write_once)
        finally:
            with contextlib.suppress(FileNotFoundError):  # gone when it was renamed into place
                os.unlink(tmp)
        return ObjectInfo(key=key, size=size, last_modified=mtime)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        """Write ``key`` through a file: its bytes go into a locked temp file of this store, which is published
        atomically (after an fsync when the store fsyncs) when the block ends without an exception.

        On an exception nothing is published and the temp file is removed. Nothing is copied: the file written
        is the file published (what :meth:`put_stream` would copy from a caller's own temp file).
        """
        path = self._path(key)
        self._ensure_folder(self._tmp_dir)
        tmp = self._tmp_dir / f"{_BORN_LOCKED}{secrets.token_hex(8)}"
        raw = self._create_temp(tmp)
        out = io.BufferedWriter(raw, buffer_size=1 << 20)  # tar headers are 512 bytes: no syscall for each
        try:
            yield out
            out.flush()
            if self._fsync:
                os.fsync(raw.fileno())
            self._publish_into(tmp, path, key, False)
        finally:
            with contextlib.suppress(Exception):  # a half-written temp file is removed below either way
                out.close()
            with contextlib.suppress(FileNotFoundError):  # gone when it was renamed into place
                os.unlink(tmp)

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        """Write a small value atomically; see :meth:`put_stream`."""
        import io

        return self.put_stream(key, io.BytesIO(data), write_once=write_once)

    def _ensure_folder(self, folder_path: Path) -> None:
        """Make sure a folder exists and resolves inside root (no symlink on the way).

        Folders are checked once per store (mkdir and realpath cost more than the
        write of a small object on some file systems) and re-checked if one vanished.
        """
        folder = str(folder_path)
        if folder not in self._safe_dirs:
            folder_path.mkdir(parents=True, exist_ok=True)
            if os.path.realpath(folder) != folder:
                raise UnsafeKey("object key resolves through a symlink")
            self._safe_dirs.add(folder)

    def _create_temp(self, tmp: Path) -> BinaryIO:
        """Create the temp file, locked (``flock``) for as long as this process writes it.

        The lock dies with the process (``kill -9`` included), which is how
        :meth:`sweep_temp_files` tells a dead writer's leftover from a live write. Where the file
        system allows (Linux ``O_TMPFILE``), the file is created unnamed, locked, and only then
        given its name: no process ever sees it unlocked while its writer lives (a writer killed
        before that leaves nothing at all). Elsewhere it is created under a name marking it as
        locked after creation, which the sweeper only removes once old enough.
        """
        try:
            out = self._create_locked_temp(tmp)
        except FileNotFoundError:  # the temp folder was removed behind our back: check it again
            self._safe_dirs.discard(str(tmp.parent))
            self._ensure_folder(tmp.parent)
            out = self._create_locked_temp(tmp)
        return out

    @staticmethod
    def _create_locked_temp(tmp: Path) -> BinaryIO:
        out = _unnamed_locked_temp(tmp) if _tmpfile_works[0] else None
        if out is not None:
            return out
        late = tmp.with_name(tmp.name.replace(_BORN_LOCKED, _LOCKED_LATE, 1))
        out = open(late, "xb", buffering=0)  # noqa: SIM115 (returned to the caller's with)
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
        os.rename(late, tmp)  # (the name marks how the file was born; its inode and lock stay)
        return out

    def sweep_temp_files(self, *, min_age_s: float = 10.0) -> int:
        """Remove temp files left by writers that died (killed runs); returns how many.

        A temp file still locked belongs to a live writer and is kept. One that was named before
        it was locked (where the file system has no ``O_TMPFILE``, or written by an older version)
        is also kept while younger than ``min_age_s``: its writer may not have taken the lock yet.
        Runs whenever a store is opened.
        """
        try:
            with os.scandir(self._tmp_dir) as it:
                entries = [e for e in it if e.name.startswith(_TMP_PREFIX)]
        except OSError:
            return 0
        removed, now = 0, time.time()
        for entry in entries:
            try:
                born_locked = entry.name.startswith(_BORN_LOCKED)
                if not born_locked and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass  # locked by a live writer, or gone already
            finally:
                os.close(fd)
        return removed

    def _publish_into(self, tmp: Path, path: Path, key: str, write_once: bool) -> None:
        """:meth:`_publish` into ``path``'s folder, made sure of first (and again if it vanished meanwhile)."""
        self._ensure_folder(path.parent)
        try:
            self._publish(tmp, path, key, write_once)
        except FileNotFoundError:  # the folder was removed behind our back: check it again
            self._safe_dirs.discard(str(path.parent))
            self._ensure_folder(path.parent)
            self._publish(tmp, path, key, write_once)

    def _publish(self, tmp: Path, path: Path, key: str, write_once: bool) -> None:
        if write_once:
            try:
                if not _rename_noreplace(str(tmp), str(path)):  # atomic: fails if the key appeared meanwhile
                    os.link(tmp, path)  # the same guarantee where renameat2 is missing (the temp is unlinked after)
            except FileExistsError:
                raise ObjectAlreadyExists(key) from None
        else:
            os.replace(tmp, path)

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the folder ``prefix`` names and the folders below it, if they hold no file (bottom-up)."""
        top = self.root / validate_key(prefix.strip("/"), foreign=True)
        if os.path.islink(top) or not top.is_dir():
            return
        folders, stack = [], [str(top)]
        while stack:  # iterative: a hostile depth cannot exhaust the stack
            folder = stack.pop()
            folders.append(folder)
            with contextlib.suppress(OSError), os.scandir(folder) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
        for folder in reversed(folders):  # children were appended after their parents
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                os.rmdir(folder)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present (a symlink is removed, never followed; foreign keys allowed)."""
        path = self._path(key, foreign=True)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                raise UnsafeKey("object key names a folder")
            path.unlink()
        except FileNotFoundError:
            pass
