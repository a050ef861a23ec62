"""Master-key rotation: re-wrap every object's data key under the current master key, data untouched.

An envelope object (:mod:`clinical_pipelines.storage.envelope`) is ``MAGIC | header length | header | sealed
chunks``; its header holds the data key wrapped by the master key it names (``kid``). Re-wrapping unwraps that
data key with the old master key, wraps it with the current one and writes the object again as the new header
followed by the very same sealed chunks, streamed through (never decrypted, never re-encrypted). The chunks'
authenticated data is the object's zone and key, which do not change, so every object stays readable with the
key ring that holds both keys, before, during and after a rotation.

Each object is replaced atomically by the store (a reader sees the old bytes or the new ones), objects already
under the current key are skipped, so a rotation killed half-way is finished by running it again. Old master
keys are never deleted here: objects outside the store (``deid`` mapping files) and backups still need them.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinical_pipelines.storage.base import ObjectNotFound, ObjectStore
from clinical_pipelines.storage.envelope import _MAX_HEADER, MAGIC, DecryptionError
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import QUARANTINE, RAW

#: The zones that hold envelope-encrypted objects.
ENCRYPTED_ZONES = (RAW, QUARANTINE)


class _Concat(io.RawIOBase):
    """A readable stream of ``head`` then the rest of ``tail`` (the sealed chunks, streamed through)."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head, self._tail = memoryview(head), tail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            n = len(self._head) if size is None or size < 0 else min(size, len(self._head))
            out, self._head = bytes(self._head[:n]), self._head[n:]
            return out
        return self._tail.read(size)


def _read_header(stream: BinaryIO, where: str) -> dict[str, object] | None:
    """The envelope header at the start of ``stream`` (read past it), or None if it is not an envelope."""
    prelude = stream.read(len(MAGIC) + 4)
    if len(prelude) < len(MAGIC) + 4 or prelude[: len(MAGIC)] != MAGIC:
        return None
    (length,) = struct.unpack(">I", prelude[len(MAGIC) :])
    if length > _MAX_HEADER:
        raise DecryptionError(f"{where}: envelope header too large")
    try:
        header = json.loads(stream.read(length))
        if not isinstance(header, dict):
            raise ValueError
        return header
    except ValueError:
        raise DecryptionError(f"{where}: malformed envelope header") from None


def rewrapped_header(header: dict[str, object], ring: KeyRing, where: str) -> bytes:
    """``MAGIC | length | header`` with the data key unwrapped by the header's master key and wrapped by the ring's
    current one; :class:`DecryptionError` naming the key id when the old key is wrong."""
    old_id = str(header["kid"])
    old = ring.get(old_id)  # KeyError_ naming the key id when the ring lacks it
    try:
        dek = AESGCM(old).decrypt(base64.b64decode(str(header["wrap_nonce"])),
                                  base64.b64decode(str(header["wrapped_dek"])), old_id.encode())  # fmt: skip
    except InvalidTag:
        raise DecryptionError(f"{where}: its data key does not unwrap under master key {old_id!r}") from None
    new_id, new = ring.current()
    nonce = secrets.token_bytes(12)
    fresh = {**header, "kid": new_id, "wrap_nonce": base64.b64encode(nonce).decode(),
             "wrapped_dek": base64.b64encode(AESGCM(new).encrypt(nonce, dek, new_id.encode())).decode()}  # fmt: skip
    body = json.dumps(fresh, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(body)) + body


def rewrap_object(store: ObjectStore, key: str, ring: KeyRing) -> tuple[str, str | None]:
    """Re-wrap ``key``'s data key under the ring's current master key.

    Returns ``(outcome, old key id)``: ``rewrapped``; ``current`` (already under the current key, untouched);
    ``plain`` (not an envelope); ``gone`` (deleted meanwhile).
    """
    try:
        stream = store.open_read(key)
    except ObjectNotFound:
        return "gone", None
    with stream:
        header = _read_header(stream, key)
        if header is None:
            return "plain", None
        if header.get("kid") == ring.current_id:
            return "current", ring.current_id
        head = rewrapped_header(header, ring, key)
        store.put_stream(key, _Concat(head, stream))  # type: ignore[arg-type]
    return "rewrapped", str(header["kid"])


@dataclass
class RotationReport:
    """What one pass did: objects looked at, re-wrapped (by their old key id), already current, not envelopes."""

    scanned: int = 0
    rewrapped: dict[str, int] = field(default_factory=dict)
    current: int = 0
    plain: int = 0

    @property
    def total_rewrapped(self) -> int:
        """Objects re-wrapped in this pass."""
        return sum(self.rewrapped.values())


def key_ids_in_use(store: ObjectStore, zones: Iterable[str] = ENCRYPTED_ZONES) -> dict[str, int]:
    """How many objects of ``zones`` each master key id wraps (reads only each object's header)."""
    counts: dict[str, int] = {}
    for zone in zones:
        for info in store.list(f"{zone}/"):
            try:
                with store.open_read(info.key) as stream:
                    header = _read_header(stream, info.key)
            except ObjectNotFound:
                continue
            if header is not None:
                kid = str(header.get("kid"))
                counts[kid] = counts.get(kid, 0) + 1
    return counts


def rotate(store: ObjectStore, ring: KeyRing, *, zones: Iterable[str] = ENCRYPTED_ZONES,
           progress: Callable[[str], None] | None = None) -> RotationReport:  # fmt: skip
    """Re-wrap every envelope object of ``zones`` that is not under the ring's current key (see the module doc).

    Idempotent and resumable: a second pass re-wraps only what the first did not reach.
    """
    report = RotationReport()
    for zone in zones:
        for info in store.list(f"{zone}/"):
            outcome, old = rewrap_object(store, info.key, ring)
            if outcome == "gone":
                continue
            report.scanned += 1
            if outcome == "rewrapped":
                assert old is not None
                report.rewrapped[old] = report.rewrapped.get(old, 0) + 1
            elif outcome == "current":
                report.current += 1
            else:
                report.plain += 1
            if progress is not None:
                progress(info.key)
    return report
