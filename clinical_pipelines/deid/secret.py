"""The de-identification secret: keys every pseudonym, UID remap and date shift.

``CLINICAL_PIPELINES_DEID_KEY`` (base64, at least 32 bytes) from configuration; in the embedded
default, generated once into the local key folder (``deid.secret``, mode 0600), never beside the
data and never in metadata. Whoever holds it can link pseudonyms back to identifiers, so it is
handled like the master key.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from clinical_pipelines.storage.keys import KeyError_, _write_exclusive

ENV_DEID_KEY = "CLINICAL_PIPELINES_DEID_KEY"
MIN_KEY_BYTES = 32
KEY_FILE = "deid.secret"  # not *.key: that pattern is the master-key ring


_FIX = f"set {ENV_DEID_KEY} to the base64 of {MIN_KEY_BYTES} or more random bytes (e.g. openssl rand -base64 32)"


def _decode(encoded: bytes | str, where: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise KeyError_(f"{where} is not valid base64; {_FIX}") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyError_(f"{where} must decode to at least {MIN_KEY_BYTES} bytes, got {len(key)}; {_FIX}")
    return key


def load_deid_key(key_dir: Path, env: Mapping[str, str] | None = None, *, create: bool = True) -> bytes:
    """The configured de-identification key; with ``create``, made once in ``key_dir`` when not configured.

    Every problem (missing, not base64, too short, unreadable or world-readable key file) raises
    :class:`KeyError_` with one line naming the variable or file and the fix, never key material.
    """
    env = os.environ if env is None else env
    encoded = env.get(ENV_DEID_KEY, "").strip()
    if encoded:
        return _decode(encoded, ENV_DEID_KEY)
    key_dir = Path(key_dir)
    path = key_dir / KEY_FILE
    try:
        if not create and not path.exists():
            raise KeyError_(f"{ENV_DEID_KEY} is not set (production takes the secret from configuration only); {_FIX}")
        if create:
            key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            _write_exclusive(path, base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)))
        if path.stat().st_mode & 0o077:
            raise KeyError_(f"{path} is readable by others; chmod 600 it (or set {ENV_DEID_KEY})")
        stored = path.read_bytes().strip()
    except OSError as exc:
        raise KeyError_(
            f"cannot read or create the key file {path} ({exc.strerror or type(exc).__name__}); "
            f"make {key_dir} readable and writable by you only, or {_FIX}"
        ) from None
    return _decode(stored, f"the key file {path}")
