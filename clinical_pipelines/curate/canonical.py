"""Canonical JSON: the one byte form of a manifest (and of anything hashed for identity)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


class NotCanonical(ValueError):
    """A document holds something canonical JSON refuses (floats, non-string keys), or bytes are not canonical."""


def _check(value: Any, where: str) -> None:
    if isinstance(value, float):
        raise NotCanonical(f"float at {where}: write ratios and measures as strings, sizes as ints")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"non-string key {key!r} at {where}")
            _check(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
    elif value is not None and not isinstance(value, (str, int, bool)):
        raise NotCanonical(f"{type(value).__name__} at {where} is not JSON")


def canonical_bytes(doc: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace; refuses floats so no value can drift between platforms."""
    _check(doc, "$")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``: the identity of a canonical document."""
    return hashlib.sha256(data).hexdigest()


def parse_canonical(data: bytes) -> Any:
    """Parse canonical JSON bytes, refusing any byte form other than the canonical one (so the hash is stable)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotCanonical(f"not JSON: {exc}") from None
    if canonical_bytes(doc) != data:
        raise NotCanonical("JSON is not in canonical form (sorted keys, no whitespace, no floats)")
    return doc
