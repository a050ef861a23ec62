"""Master keys for envelope encryption: a local key folder by default, configuration in production.

A master key never sits in the data folder. The embedded default creates one
once, under a key folder (mode 0700, key files 0600) that is refused if it lies
inside the data folder. Production passes the key in through the environment
(``CLINICAL_PIPELINES_MASTER_KEY``, base64 of 32 bytes, with
``CLINICAL_PIPELINES_MASTER_KEY_ID``), typically injected from a secret manager; after a rotation the
earlier keys come in ``CLINICAL_PIPELINES_RETIRED_MASTER_KEYS`` (``id:base64,...``) until no object needs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_MASTER_KEY = "CLINICAL_PIPELINES_MASTER_KEY"
ENV_MASTER_KEY_ID = "CLINICAL_PIPELINES_MASTER_KEY_ID"
#: Earlier master keys, still needed to read (and re-wrap) objects written under them: ``id:base64,id:base64``.
ENV_RETIRED_MASTER_KEYS = "CLINICAL_PIPELINES_RETIRED_MASTER_KEYS"
ENV_ENVIRONMENT = "CLINICAL_PIPELINES_ENV"
KEY_BYTES = 32
_FIX = f"set {ENV_MASTER_KEY} to the base64 of {KEY_BYTES} random bytes (e.g. `openssl rand -base64 32`)"


class KeyError_(Exception):
    """A key is missing, malformed or unknown (never carries key material)."""


@dataclass(frozen=True)
class KeyRing:
    """Master keys by id, and the id new objects are wrapped with."""

    keys: Mapping[str, bytes]
    current_id: str
    key_dir: Path | None = None  # a local ring: a key it lacks may have been added since (a rotation)

    def current(self) -> tuple[str, bytes]:
        """The (key id, key) that wraps new data keys."""
        return self.current_id, self.keys[self.current_id]

    def get(self, key_id: str) -> bytes:
        """The master key named ``key_id``; raises :class:`KeyError_` naming it if this ring lacks it.

        A local ring looks in its key folder again first, so a process started before a rotation reads the
        objects the rotation re-wrapped under the new key."""
        try:
            return self.keys[key_id]
        except KeyError:
            if self.key_dir is not None:
                fresh = local_keyring(self.key_dir)
                if key_id in fresh.keys:
                    return fresh.keys[key_id]
            raise KeyError_(f"master key {key_id!r} is not available to this process") from None


def fingerprint_id(prefix: str, key: bytes) -> str:
    """A stable, non-reversible id for ``key`` (a keyed-hash fingerprint, not the key)."""
    return f"{prefix}-{hashlib.sha256(b'clinical-pipelines/key-id/' + key).hexdigest()[:16]}"


def keyring_from_env(env: Mapping[str, str]) -> KeyRing | None:
    """The ring configured in ``env``, or None when no master key is set there."""
    encoded = env.get(ENV_MASTER_KEY, "").strip()
    if not encoded:
        return None
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise KeyError_(f"{ENV_MASTER_KEY} is not valid base64; {_FIX}") from None
    if len(key) != KEY_BYTES:
        raise KeyError_(f"{ENV_MASTER_KEY} must decode to {KEY_BYTES} bytes, got {len(key)}; {_FIX}")
    key_id = env.get(ENV_MASTER_KEY_ID, "").strip() or fingerprint_id("env", key)
    keys = {key_id: key}
    for item in filter(None, (p.strip() for p in env.get(ENV_RETIRED_MASTER_KEYS, "").split(","))):
        old_id, sep, encoded_old = item.partition(":")
        try:
            old = base64.b64decode(encoded_old, validate=True) if sep and old_id.strip() else b""
        except ValueError:
            old = b""
        if len(old) != KEY_BYTES:
            raise KeyError_(f"{ENV_RETIRED_MASTER_KEYS} must be id:base64 pairs of {KEY_BYTES}-byte keys, comma "
                            "separated (an entry is not)")  # fmt: skip
        keys.setdefault(old_id.strip(), old)
    return KeyRing(keys, key_id)


def _write_exclusive(path: Path, data: bytes) -> bool:
    """Create ``path`` with mode 0600 holding ``data``; False if it already existed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def local_keyring(key_dir: Path) -> KeyRing:
    """Load the key folder's ring, creating the first master key if there is none.

    Safe against concurrent first use: exactly one key wins and every process
    then reads that one.
    """
    key_dir = Path(key_dir)
    try:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(key_dir, 0o700)
    except OSError as exc:
        raise KeyError_(
            f"cannot use the key folder {key_dir} ({_why(exc)}); set CLINICAL_PIPELINES_KEY_DIR to a private, "
            "writable folder outside the data folder"
        ) from None
    current_file = key_dir / "current"
    if not current_file.exists():
        key = secrets.token_bytes(KEY_BYTES)
        key_id = fingerprint_id("local", key)
        record = {"key_id": key_id, "key": base64.b64encode(key).decode(), "alg": "AES-256"}
        key_file = key_dir / f"{key_id}.key"
        _write_exclusive(key_file, json.dumps(record).encode())
        if not _write_exclusive(current_file, key_id.encode()):
            key_file.unlink(missing_ok=True)  # another process created the first key first
    try:
        current_id = current_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyError_(
            f"cannot read the key file {current_file} ({_why(exc)}); restore it from backup or set {ENV_MASTER_KEY}"
        ) from None
    keys: dict[str, bytes] = {}
    for path in sorted(key_dir.glob("*.key")):
        try:
            if path.stat().st_mode & 0o077:
                raise KeyError_(f"key file {path.name} in {key_dir} is readable by others; chmod 600 it")
            record = json.loads(path.read_text())
            key = base64.b64decode(record["key"], validate=True)
            if len(key) != KEY_BYTES:
                raise ValueError("wrong key length")
            keys[str(record["key_id"])] = key
        except FileNotFoundError:  # a losing concurrent creator removed its candidate key
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyError_(
                f"cannot read the key file {path} ({_why(exc)}); restore it from backup or set {ENV_MASTER_KEY}"
            ) from None
    if current_id not in keys:
        raise KeyError_(f"key folder {key_dir} names current key {current_id!r} but has no file for it")
    return KeyRing(keys, current_id, key_dir)


def add_local_key(key_dir: Path) -> str:
    """Create a new master key in the local key folder and make it current (older keys stay, for reading);
    returns its id. The switch is one atomic rename of the ``current`` file."""
    local_keyring(key_dir)  # the folder exists, is private and readable
    key = secrets.token_bytes(KEY_BYTES)
    key_id = fingerprint_id("local", key)
    record = {"key_id": key_id, "key": base64.b64encode(key).decode(), "alg": "AES-256"}
    key_dir = Path(key_dir)
    _write_exclusive(key_dir / f"{key_id}.key", json.dumps(record).encode())
    staged = key_dir / f".current.{secrets.token_hex(6)}.tmp"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_id.encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staged, key_dir / "current")
    return key_id


def _why(exc: BaseException) -> str:
    """An exception reduced to its kind (OS errors: their strerror), never file content."""
    return getattr(exc, "strerror", None) or type(exc).__name__


def load_keyring(key_dir: Path, env: Mapping[str, str] | None = None, *, production: bool | None = None) -> KeyRing:
    """The configured ring: the environment's master key if set, else the local key folder's.

    In production (``production=True``, or ``CLINICAL_PIPELINES_ENV=production`` when not given) the
    key must come from the environment: no local key is ever generated or read there.
    """
    env = os.environ if env is None else env
    ring = keyring_from_env(env)
    if ring is not None:
        return ring
    if production is None:
        production = env.get(ENV_ENVIRONMENT, "").strip() == "production"
    if production:
        raise KeyError_(
            f"{ENV_MASTER_KEY} is not set: production takes the master key from your secret manager and never "
            f"generates one; {_FIX}"
        )
    return local_keyring(key_dir)
