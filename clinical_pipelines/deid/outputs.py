"""An output folder the standalone de-identification writes into: atomic, write-once names, no leftovers.

A file appears under its final name complete or not at all (written to a hidden temporary name in
the same folder, then hard-linked into place). A name already taken by identical bytes is fine (a
re-run); by different bytes it is refused, never overwritten. Any OS error becomes one
:class:`OutputFolderError` naming only the folder, after this writer's temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_TMP_SUFFIX = ".tmp"


class OutputFolderError(Exception):
    """The output folder cannot be written (full, read-only, missing...). Names the folder, never an input."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(folder, reason)  # plain args: the error crosses process boundaries (pickled)
        self.folder, self.reason = folder, reason

    @classmethod
    def from_os_error(cls, folder: Path, cause: OSError) -> OutputFolderError:
        """The error for ``cause`` (its message may name a file: only its description is kept)."""
        return cls(folder, cause.strerror or type(cause).__name__)

    def __str__(self) -> str:
        return f"cannot write to the output folder {self.folder} ({self.reason}); free space or give a writable folder"


class OutputFolder:
    """Writes named files into ``root``; every temporary name of one run starts with ``.<run id>-``."""

    def __init__(self, root: Path, run_id: str | None = None) -> None:
        self.root = Path(root)
        self.run_id = run_id or secrets.token_hex(6)
        self._count = 0

    def create(self) -> None:
        """Make the folder (and its parents); :class:`OutputFolderError` if that fails."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError.from_os_error(self.root, exc) from None

    def put(self, name: str, data: bytes) -> bool:
        """Write ``data`` as ``root/name``; False if that name already holds different bytes."""
        self._count += 1
        tmp = self.root / f".{self.run_id}-{os.getpid()}-{self._count}{_TMP_SUFFIX}"
        target = self.root / name
        try:
            try:
                tmp.write_bytes(data)
                os.link(tmp, target)
            except FileExistsError:
                return target.read_bytes() == data
            except OSError as exc:
                raise OutputFolderError.from_os_error(self.root, exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return True

    def sweep(self) -> int:
        """Remove temporary files this run left (a worker killed mid-write); returns how many."""
        removed = 0
        with contextlib.suppress(OSError):
            for path in self.root.glob(f".{self.run_id}-*{_TMP_SUFFIX}"):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed
