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


def load_deid_key(key_dir: Path, env: Mapping[str, str] | None = None, *, create: bool = True) -> bytes:
    """The configured de-identification key; with ``create``, made once in ``key_dir`` when not configured."""
    env = os.environ if env is None else env
    encoded = env.get(ENV_DEID_KEY, "").strip()
    if encoded:
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise KeyError_(f"{ENV_DEID_KEY} is not valid base64") from None
        if len(key) < MIN_KEY_BYTES:
            raise KeyError_(f"{ENV_DEID_KEY} must decode to at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        return key
    key_dir = Path(key_dir)
    path = key_dir / KEY_FILE
    if create:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not create and not path.exists():
        raise KeyError_(f"{ENV_DEID_KEY} is not set (production takes the secret from configuration only)")
    if not path.exists():
        _write_exclusive(path, base64.b64encode(secrets.token_bytes(MIN_KEY_BYTES)))
    if path.stat().st_mode & 0o077:
        raise KeyError_(f"{path} is readable by others; chmod 600 it")
    return base64.b64decode(path.read_bytes())
