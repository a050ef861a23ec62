"""A minimal deterministic POSIX (ustar) tar writer that reports where each member's bytes land.

Shards are plain uncompressed tar files readable by ``tar``, Python's ``tarfile`` and WebDataset.
Headers carry no time, owner or host detail, so the same samples always give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import Any, BinaryIO

BLOCK = 512


def _pad(length: int) -> int:
    return -length % BLOCK


class TarStreamWriter:
    """Appends members to a binary stream, hashing every byte written; tracks the current offset."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.offset = 0
        self._span: Any = None

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._hash.update(data)
        if self._span is not None:
            self._span.update(data)
        self.offset += len(data)

    def add(self, name: str, data: bytes | memoryview) -> tuple[int, int]:
        """Write one regular-file member; returns ``(offset of its data, length of its data)``.

        Promises: the data starts on a 512-byte boundary of the stream, so an array stored in it
        keeps the alignment of its own format (an ``.npy`` array starts 64-byte aligned).
        """
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        info.uname = info.gname = ""
        header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
        self._write(header)
        start = self.offset
        self._write(data)
        self._write(b"\0" * _pad(len(data)))
        return start, len(data)

    def add_sample(
        self, key: str, members: tuple[tuple[str, bytes], ...]
    ) -> tuple[int, int, str, dict[str, tuple[int, int]]]:
        """Write one sample's members as ``<key>.<ext>``; returns its span, the span's sha256 and member spans.

        The span runs from the first member's header to the end of the last member's padding, so
        ``sha256(shard[offset:offset + length])`` checks the sample on its own.
        """
        start = self.offset
        self._span = hashlib.sha256()
        spans = {ext: self.add(f"{key}.{ext}", data) for ext, data in members}
        digest, self._span = self._span.hexdigest(), None
        return start, self.offset - start, digest, spans

    @staticmethod
    def sample_size(members: tuple[tuple[str, bytes], ...]) -> int:
        """Bytes :meth:`add_sample` will write for ``members``."""
        return sum(BLOCK + len(data) + _pad(len(data)) for _, data in members)

    def close(self) -> str:
        """Write the end-of-archive marker (two zero blocks); returns the sha256 of the whole stream."""
        self._write(b"\0" * (2 * BLOCK))
        return self._hash.hexdigest()
