"""A minimal deterministic POSIX (ustar) tar writer that reports where each member's bytes land.

Shards are plain uncompressed tar files readable by ``tar``, Python's ``tarfile`` and WebDataset.
Headers carry no time, owner or host detail, so the same samples always give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO

BLOCK = 512


def _pad(length: int) -> int:
    return -length % BLOCK


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def sample_parts(
    key: str, members: tuple[tuple[str, bytes], ...]
) -> tuple[tuple[bytes, ...], int, dict[str, tuple[int, int]]]:
    """One sample's members as ``<key>.<ext>`` tar members: the byte pieces to write in order, their total
    length and each member's data span ``(offset, length)`` counted from the sample's first byte.

    Promises: the pieces do not depend on where the sample lands in a shard (no offsets or times in a
    header) and the length is a multiple of 512, so a sample can be prepared apart (in a worker process)
    and appended to any shard; each member's data starts on a 512-byte boundary, so an array stored in it
    keeps the alignment of its own format (an ``.npy`` array starts 64-byte aligned).
    """
    parts: list[bytes] = []
    spans: dict[str, tuple[int, int]] = {}
    offset = 0
    for ext, data in members:
        header = _header(f"{key}.{ext}", len(data))
        pad = _pad(len(data))
        parts += (header, data, b"\0" * pad) if pad else (header, data)
        spans[ext] = (offset + len(header), len(data))
        offset += len(header) + len(data) + pad
    return tuple(parts), offset, spans


class TarStreamWriter:
    """Appends samples to a binary stream, hashing every byte written; tracks the current offset."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.offset = 0

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def append(self, parts: tuple[bytes, ...]) -> int:
        """Write pieces made by :func:`sample_parts`; returns the offset of the first."""
        start = self.offset
        for part in parts:
            self._write(part)
        return start

    def add_sample(
        self, key: str, members: tuple[tuple[str, bytes], ...]
    ) -> tuple[int, int, str, dict[str, tuple[int, int]]]:
        """Write one sample's members as ``<key>.<ext>``; returns its span, the span's sha256 and member spans.

        The span runs from the first member's header to the end of the last member's padding, so
        ``sha256(shard[offset:offset + length])`` checks the sample on its own.
        """
        parts, length, spans = sample_parts(key, members)
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        start = self.append(parts)
        return start, length, digest.hexdigest(), {ext: (start + o, n) for ext, (o, n) in spans.items()}

    @staticmethod
    def sample_size(members: tuple[tuple[str, bytes], ...]) -> int:
        """Bytes :meth:`add_sample` will write for ``members``."""
        return sum(BLOCK + len(data) + _pad(len(data)) for _, data in members)

    def close(self) -> str:
        """Write the end-of-archive marker (two zero blocks); returns the sha256 of the whole stream."""
        self._write(b"\0" * (2 * BLOCK))
        return self._hash.hexdigest()
