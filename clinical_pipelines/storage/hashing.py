"""Hash a stream while it flows through, so verification costs no extra read."""

from __future__ import annotations

import hashlib
from typing import BinaryIO


class HashingReader:
    """Wraps a readable stream; every byte read updates ``sha256`` and ``size``.

    The first ``head_size`` bytes are also kept in ``head`` (for content sniffing).
    """

    def __init__(self, source: BinaryIO, *, head_size: int = 0) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0
        self._head_size = head_size
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        """Read from the wrapped stream, hashing what passes."""
        data = self._source.read(size)
        if data:
            self._hash.update(data)
            if len(self.head) < self._head_size:
                self.head += data[: self._head_size - len(self.head)]
            self.size += len(data)
        return data

    def hexdigest(self) -> str:
        """sha256 of everything read so far."""
        return self._hash.hexdigest()

    def drain(self, chunk_size: int = 8 * 1024 * 1024) -> None:
        """Read the rest of the stream (hashing it) and discard the bytes."""
        while self.read(chunk_size):
            pass
