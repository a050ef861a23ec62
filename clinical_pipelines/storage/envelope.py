"""Streaming envelope encryption: AES-256-GCM data keys wrapped by a master key.

Each object gets a fresh 256-bit data key (DEK). The DEK is wrapped with the
master key (AES-256-GCM, AAD = key id) and stored in the object's header next
to the master key id, so rotating a master key re-wraps headers only.

The body is a sequence of independently sealed chunks (the STREAM
construction used by Tink's streaming AEAD): chunk *i* is sealed with nonce =
7-byte random prefix || i (4 bytes) || last-flag (1 byte). Reordering, dropping
or truncating chunks fails authentication, and neither side ever holds more
than one chunk in memory.

Layout: ``MAGIC`` | u32 header length | header JSON | sealed chunks.

Binding (format 2, ``CPENV2``): every chunk's authenticated data (AES-GCM AAD) is the object's
*context*, its zone and object key (:func:`object_context`), so a ciphertext copied, swapped or
renamed to another key fails to decrypt with :class:`TamperedObject` (``tampered_object``).
Objects of format 1 (``CPENV1``, written before the binding, no AAD) are refused with a message
saying so: nothing proves they were not swapped. Re-ingest their landing drops into a fresh data
folder. The header's ``chunk_size`` is bounded on decrypt (:data:`MAX_CHUNK_SIZE`), so a forged
header cannot make a reader allocate gigabytes.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinical_pipelines.storage.keys import KeyRing

MAGIC = b"CPENV2\n"
LEGACY_MAGIC = b"CPENV1\n"  # format 1: chunks carry no AAD (not bound to their object key); refused
ALGORITHM = "AES-256-GCM-STREAM"
# 64 KiB chunks: a reader can authenticate and decrypt just the start of an object (a DICOM
# header) without touching the rest; per-chunk overhead is 16 bytes and one AEAD call.
CHUNK_SIZE = 64 * 1024
# Streams are read, sealed and opened this many bytes of chunks at a time (the chunk layout is unchanged).
BLOCK_BYTES = 1024 * 1024
TAG_SIZE = 16
_NONCE_PREFIX_SIZE = 7
_MAX_HEADER = 64 * 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024  # a header may not ask a reader for more than this per chunk
TAMPERED = "tampered_object"  # the quarantine reason for an object that fails authentication


class DecryptionError(Exception):
    """The ciphertext is malformed, truncated, tampered with, or under an unknown key."""

    reason = TAMPERED


class TamperedObject(DecryptionError):
    """A chunk failed authentication: the object was altered, truncated, swapped or renamed."""


class LegacyEnvelope(DecryptionError):
    """An object in envelope format 1 (no AAD binding to its key): refused."""


def object_context(key: str) -> bytes:
    """The authenticated data binding a ciphertext to its place: zone (first key segment) and object key."""
    zone = key.split("/", 1)[0]
    return b"clinical-pipelines/envelope/2\x00zone=" + zone.encode() + b"\x00key=" + key.encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        data = stream.read(remaining)
        if not data:
            break
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


class EncryptingReader:
    """A readable stream of ciphertext for the plaintext ``source`` stream.

    Feed it to ``ObjectStore.put_stream``: encryption happens as the store pulls.
    """

    def __init__(
        self, source: BinaryIO, keyring: KeyRing, *, chunk_size: int = CHUNK_SIZE, context: bytes | str = b""
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")
        self._context = object_context(context) if isinstance(context, str) else context
        self.key_id, master = keyring.current()
        dek = AESGCM.generate_key(bit_length=256)
        wrap_nonce = secrets.token_bytes(12)
        wrapped = AESGCM(master).encrypt(wrap_nonce, dek, self.key_id.encode())
        self._prefix = secrets.token_bytes(_NONCE_PREFIX_SIZE)
        header = json.dumps(
            {
                "alg": ALGORITHM,
                "kid": self.key_id,
                "wrap_nonce": base64.b64encode(wrap_nonce).decode(),
                "wrapped_dek": base64.b64encode(wrapped).decode(),
                "nonce_prefix": base64.b64encode(self._prefix).decode(),
                "chunk_size": chunk_size,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        self._aead = AESGCM(dek)
        self._source = source
        self._chunk_size = chunk_size
        # The source is read and sealed a block of chunks at a time (one read, one hash update and one
        # write per block instead of per 64 KiB chunk); the chunks and their nonces are the same.
        self._block = chunk_size * max(1, BLOCK_BYTES // chunk_size)
        self._index = 0
        self._pending = _read_exact(source, self._block)  # one block of look-ahead tells us which chunk is last
        self._done = False
        self._prelude = MAGIC + struct.pack(">I", len(header)) + header  # returned with the first block
        self._buffer: bytearray | memoryview = bytearray()

    def _seal_next(self) -> bytearray:
        """Seal the pending block (every chunk of it) into one buffer, after the prelude if not yet sent."""
        data = self._pending
        following = _read_exact(self._source, self._block) if len(data) == self._block else b""
        last_block = not following
        size, step = len(data), self._chunk_size
        count = max(1, -(-size // step))
        prelude, self._prelude = self._prelude, b""
        out = bytearray(len(prelude) + size + count * TAG_SIZE)
        out[: len(prelude)] = prelude
        view, sink, at = memoryview(data), memoryview(out), len(prelude)
        for j in range(count):
            piece = view[j * step : (j + 1) * step]
            end = at + len(piece) + TAG_SIZE
            last = last_block and j == count - 1
            self._aead.encrypt_into(_nonce(self._prefix, self._index, last), piece, self._context, sink[at:end])
            self._index += 1
            at = end
        self._pending = following
        self._done = last_block
        return out

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of ciphertext (all the rest if ``size`` < 0); b"" at the end."""
        if size is None or size < 0:
            parts = [bytes(self._buffer)]
            while not self._done:
                parts.append(self._seal_next())
            self._buffer = bytearray()
            return b"".join(parts)
        if not self._buffer and not self._done:
            self._buffer = self._seal_next()
        if isinstance(self._buffer, bytearray) and size >= len(self._buffer):
            out, self._buffer = self._buffer, bytearray()  # the whole block, no copy
            return out  # type: ignore[return-value]  (a bytes-like buffer)
        view = memoryview(self._buffer)
        out_bytes = bytes(view[:size])
        self._buffer = view[size:]
        return out_bytes


class DecryptingReader:
    """A readable stream of plaintext from an envelope-encrypted ``source`` stream.

    Every chunk is authenticated before any of its bytes are returned; a truncated, reordered,
    altered, or moved object (``context`` differs from the writer's) raises :class:`TamperedObject`.
    """

    def __init__(self, source: BinaryIO, keyring: KeyRing, *, context: bytes | str = b"") -> None:
        self._source = source
        self._context = object_context(context) if isinstance(context, str) else context
        self._where = f"object {context}" if isinstance(context, str) and context else "the envelope"
        prelude = _read_exact(source, len(MAGIC) + 4)
        if prelude[: len(LEGACY_MAGIC)] == LEGACY_MAGIC:
            raise LegacyEnvelope(
                f"{self._where} is in envelope format 1 (written before ciphertexts were bound to their "
                "object key) and is refused; re-ingest its landing drop into a fresh data folder"
            )
        if len(prelude) < len(MAGIC) + 4 or prelude[: len(MAGIC)] != MAGIC:
            raise DecryptionError("not an envelope-encrypted object (bad magic)")
        (header_len,) = struct.unpack(">I", prelude[len(MAGIC) :])
        if header_len > _MAX_HEADER:
            raise DecryptionError("envelope header too large")
        try:
            header = json.loads(_read_exact(source, header_len))
            if header["alg"] != ALGORITHM:
                raise DecryptionError(f"unsupported envelope algorithm {header['alg']!r}")
            self.key_id = str(header["kid"])
            master = keyring.get(self.key_id)
            dek = AESGCM(master).decrypt(
                base64.b64decode(header["wrap_nonce"]),
                base64.b64decode(header["wrapped_dek"]),
                self.key_id.encode(),
            )
            self._prefix = base64.b64decode(header["nonce_prefix"])
            self._chunk_size = header["chunk_size"]
            if type(self._chunk_size) is not int or not MIN_CHUNK_SIZE <= self._chunk_size <= MAX_CHUNK_SIZE:
                raise DecryptionError(f"envelope chunk_size outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} (forged header)")
            if len(self._prefix) != _NONCE_PREFIX_SIZE:
                raise DecryptionError("envelope nonce prefix has the wrong length (forged header)")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise DecryptionError(f"malformed envelope header ({type(exc).__name__})") from None
        except InvalidTag:
            raise DecryptionError(f"data key does not unwrap under master key {self.key_id!r} (wrong key?)") from None
        self._aead = AESGCM(dek)
        self._sealed_size = self._chunk_size + TAG_SIZE
        # A small read (a DICOM header) opens one chunk; a large or whole read opens a block of chunks
        # per source read. Either way every chunk is authenticated before any of its bytes is returned.
        self._block_chunks = max(1, BLOCK_BYTES // self._chunk_size)
        self._pending = _read_exact(source, self._sealed_size)
        self._index = 0
        self._done = False
        self._buffer = memoryview(b"")

    def _open_next(self, chunks: int = 1) -> bytes | bytearray:
        """Open every chunk of the pending read; look ahead ``chunks`` chunks to know which one is last."""
        sealed, unit = self._pending, self._sealed_size
        full = len(sealed) % unit == 0 and len(sealed) > 0
        following = _read_exact(self._source, unit * chunks) if full else b""
        last_read = not following
        count = max(1, -(-len(sealed) // unit))
        view = memoryview(sealed)
        out = bytearray(max(0, len(sealed) - count * TAG_SIZE))
        sink, at = memoryview(out), 0
        for j in range(count):
            piece = view[j * unit : (j + 1) * unit]
            last = last_read and j == count - 1
            try:
                if len(piece) < TAG_SIZE:
                    raise InvalidTag
                end = at + len(piece) - TAG_SIZE
                self._aead.decrypt_into(_nonce(self._prefix, self._index, last), piece, self._context, sink[at:end])
            except InvalidTag:
                raise TamperedObject(
                    f"{self._where}: chunk {self._index} failed authentication (altered, truncated, swapped or "
                    f"renamed: {TAMPERED})"
                ) from None
            self._index += 1
            at = end
        self._pending = following
        self._done = last_read
        return out

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of plaintext (all the rest if ``size`` < 0); b"" at the end."""
        whole = size is None or size < 0
        if whole:
            parts = [bytes(self._buffer)]
            while not self._done:
                parts.append(self._open_next(self._block_chunks))
            self._buffer = memoryview(b"")
            return parts[0] if len(parts) == 1 else b"".join(parts)
        chunks = self._block_chunks if size >= self._chunk_size * self._block_chunks else 1
        while not self._buffer and not self._done:
            self._buffer = memoryview(self._open_next(chunks))
        out = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return out

    def close(self) -> None:
        """Close the underlying ciphertext stream."""
        self._source.close()

    def __enter__(self) -> DecryptingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encrypt_bytes(data: bytes, keyring: KeyRing, *, context: bytes | str = b"") -> bytes:
    """Envelope-encrypt a small in-memory value, bound to ``context`` (an object key, or raw AAD bytes)."""
    import io

    return EncryptingReader(io.BytesIO(data), keyring, context=context).read()


def decrypt_bytes(blob: bytes, keyring: KeyRing, *, context: bytes | str = b"") -> bytes:
    """Decrypt a small in-memory envelope written under the same ``context``."""
    import io

    return DecryptingReader(io.BytesIO(blob), keyring, context=context).read()


def authenticate(reader: DecryptingReader, block: int = 1024 * 1024) -> int:
    """Read ``reader`` to its end, authenticating every chunk and keeping none; returns the plaintext size."""
    total = 0
    while chunk := reader.read(block):
        total += len(chunk)
    return total
