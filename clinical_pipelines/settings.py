"""Environment-driven settings: where the zones live and where keys come from.

Environment variables (a contract: keep the names):

- ``CLINICAL_PIPELINES_ENV``: ``local`` (default) or ``production``.
- ``CLINICAL_PIPELINES_DATA_DIR``: the local data folder (default ``./.clinical_data``).
- ``CLINICAL_PIPELINES_STORE_URL``: object store for all zones; a path, ``file://`` or
  ``s3://bucket/prefix`` (default: the data folder).
- ``CLINICAL_PIPELINES_S3_ENDPOINT_URL``: S3-compatible endpoint (moto, MinIO, ...).
- ``CLINICAL_PIPELINES_S3_KMS_KEY_ID``: KMS key id or ARN; on S3 the PHI zones (raw, quarantine, landing) are
  written with SSE-KMS under it, on top of the envelope encryption; required in production on S3.
- ``CLINICAL_PIPELINES_KEY_DIR``: local key folder (default ``~/.config/clinical-pipelines/keys``);
  must not lie inside the data folder.
- ``CLINICAL_PIPELINES_MASTER_KEY`` / ``CLINICAL_PIPELINES_MASTER_KEY_ID``: the master key
  (base64, 32 bytes) from a secret manager; required in production.
- ``CLINICAL_PIPELINES_RETIRED_MASTER_KEYS``: earlier master keys after a rotation (``id:base64,...``), read
  and re-wrapped by ``keys rotate --resume``, never used to write.
- ``CLINICAL_PIPELINES_DEID_KEY``: the de-identification secret (base64, >= 32 bytes) keying
  pseudonyms, UID remaps and date shifts; required in production.
- ``CLINICAL_PIPELINES_STALE_AFTER_HOURS``: an incomplete drop older than this is quarantined
  (default 24; 0 disables).
- ``CLINICAL_PIPELINES_INGEST_WORKERS``: files ingested in parallel per drop (default 4).
- ``CLINICAL_PIPELINES_DEID_WORKERS``: warm worker processes de-identifying a drop's DICOM files and notes (default:
  the CPU count, at most 4; 1 runs them in the stage's own process). Drops of fewer than 32 files are
  always done in process.
- ``CLINICAL_PIPELINES_SHARD_WORKERS``: warm worker processes decoding compressed DICOM pixel data while
  training shards are built (default: the CPU count, at most 4; 1 decodes in process). Uncompressed pixels
  are always decoded in process: copying them to a worker costs more than decoding them.
- ``CLINICAL_PIPELINES_MAX_DROP_FILES``: entries one ``drop.json`` may list (default 100,000); a
  drop listing more is quarantined whole with one ``unreadable_drop_manifest`` record.
- ``CLINICAL_PIPELINES_MAX_ITEM_FAILURE_FRACTION``: share of a drop's items (per modality) that may
  fail validation and be quarantined while the rest goes on (default 0.2); above it the drop stops.
- ``CLINICAL_PIPELINES_CACHE_DIR``: local cache folder of training shards (default
  ``<data dir>/.cache/shards``); shared by the readers of one machine.
- ``CLINICAL_PIPELINES_CACHE_MAX_GB``: size bound of that cache, LRU-evicted (default 50; 0 = unbounded).
- ``CLINICAL_PIPELINES_CACHE_TTL_HOURS``: cached shards unused this long are wiped (default 0 = never).
- ``CLINICAL_PIPELINES_SHARD_MB``: target size of a training shard in MiB (default 256).
- ``CLINICAL_PIPELINES_SPECS_DIR``: folder of curated dataset specs (``*.yaml``); default: the sample
  specs shipped in ``clinical_pipelines/curate/specs``.
- ``CLINICAL_PIPELINES_MAX_*`` / ``CLINICAL_PIPELINES_NOTES_BATCH``: resource limits on what a source
  may send, each with its own quarantine reason (see :mod:`clinical_pipelines.limits`).
- ``CLINICAL_PIPELINES_CATALOG_URL``: the catalog database (SQLAlchemy URL), e.g.
  ``postgresql+psycopg2://catalog@db/catalog`` (give the password through ``PGPASSWORD`` or
  ``~/.pgpass``, not the URL); default ``sqlite:///<data dir>/catalog.sqlite``.
- ``CLINICAL_PIPELINES_SOURCES``: the sources YAML (owner, approval, purposes and sensitivity of each source,
  :mod:`clinical_pipelines.landing.sources`); default: the shipped ``landing/sources.yaml``.
- ``CLINICAL_PIPELINES_AUDIT_SIGNING_KEY``: base64 of the Ed25519 private key (32 bytes) signing audit exports
  (:mod:`clinical_pipelines.catalog.audit_export`); required for exports in production, never generated there.
- ``CLINICAL_PIPELINES_PRINCIPAL``: who acts, for commands that touch data (``--as`` wins); grants decide what
  it may do. Default ``local-admin`` in the local environment (created with every grant but ``keys`` on first
  use); production has no default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinical_pipelines.limits import Limits
from clinical_pipelines.storage.keys import ENV_MASTER_KEY, KeyRing, load_keyring

if TYPE_CHECKING:
    from clinical_pipelines.storage.base import ObjectStore

ENV = "CLINICAL_PIPELINES_ENV"
ENV_DATA_DIR = "CLINICAL_PIPELINES_DATA_DIR"
ENV_STORE_URL = "CLINICAL_PIPELINES_STORE_URL"
ENV_S3_ENDPOINT_URL = "CLINICAL_PIPELINES_S3_ENDPOINT_URL"
ENV_KEY_DIR = "CLINICAL_PIPELINES_KEY_DIR"
ENV_STALE_AFTER_HOURS = "CLINICAL_PIPELINES_STALE_AFTER_HOURS"
ENV_INGEST_WORKERS = "CLINICAL_PIPELINES_INGEST_WORKERS"
ENV_DEID_WORKERS = "CLINICAL_PIPELINES_DEID_WORKERS"
ENV_SHARD_WORKERS = "CLINICAL_PIPELINES_SHARD_WORKERS"
ENV_MAX_ITEM_FAILURE_FRACTION = "CLINICAL_PIPELINES_MAX_ITEM_FAILURE_FRACTION"
ENV_CACHE_DIR = "CLINICAL_PIPELINES_CACHE_DIR"
ENV_CACHE_MAX_GB = "CLINICAL_PIPELINES_CACHE_MAX_GB"
ENV_CACHE_TTL_HOURS = "CLINICAL_PIPELINES_CACHE_TTL_HOURS"
ENV_SHARD_MB = "CLINICAL_PIPELINES_SHARD_MB"
ENV_SPECS_DIR = "CLINICAL_PIPELINES_SPECS_DIR"
ENV_CATALOG_URL = "CLINICAL_PIPELINES_CATALOG_URL"
ENV_PRINCIPAL = "CLINICAL_PIPELINES_PRINCIPAL"
ENV_SOURCES = "CLINICAL_PIPELINES_SOURCES"
ENV_S3_KMS_KEY_ID = "CLINICAL_PIPELINES_S3_KMS_KEY_ID"
SHIPPED_SOURCES = Path(__file__).resolve().parent / "landing" / "sources.yaml"
LOCAL_PRINCIPAL = "local-admin"  # the administrator the embedded default creates (catalog.access.LOCAL_ADMIN)
SHIPPED_SPECS_DIR = Path(__file__).resolve().parent / "curate" / "specs"

DEFAULT_DATA_DIR = ".clinical_data"


class SettingsError(ValueError):
    """The configuration is inconsistent or unsafe."""


@dataclass(frozen=True)
class Variable:
    """One setting: the field it fills, the environment variable that sets it, how its text is read, and its
    default (a value, or a function of the environment and the fields resolved before it)."""

    field: str
    name: str
    kind: Callable[[str], Any]
    default: Any

    def resolve(self, override: object, env: Mapping[str, str], resolved: Mapping[str, Any]) -> Any:
        """The override if given (``0`` included), else the variable if set and not empty, else the default."""
        raw = override if override is not None and override != "" else env.get(self.name) or None
        if raw is None:
            return self.default(env, resolved) if callable(self.default) else self.default
        try:
            return self.kind(str(raw))
        except ValueError:
            expected = "a number" if self.kind in (int, float) else "a path"
            raise SettingsError(f"{self.name} must be {expected}, got {str(raw)[:32]!r}; fix or unset it") from None


def _path(text: str) -> Path:
    return Path(text).absolute()


def _default_key_dir(env: Mapping[str, str], _resolved: Mapping[str, Any]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "clinical-pipelines" / "keys"


def _default_workers(_env: Mapping[str, str], _resolved: Mapping[str, Any]) -> int:
    return min(4, os.cpu_count() or 1)


# The one table of settings, in resolution order (a default may use the fields above it).
VARIABLES: tuple[Variable, ...] = (
    Variable("env", ENV, str, "local"),
    Variable("data_dir", ENV_DATA_DIR, _path, lambda env, r: _path(DEFAULT_DATA_DIR)),
    Variable("store_url", ENV_STORE_URL, str, lambda env, r: str(r["data_dir"])),
    Variable("s3_endpoint_url", ENV_S3_ENDPOINT_URL, str, None),
    Variable("s3_kms_key_id", ENV_S3_KMS_KEY_ID, str, None),
    Variable("key_dir", ENV_KEY_DIR, _path, lambda env, r: _default_key_dir(env, r).absolute()),
    Variable("stale_after_hours", ENV_STALE_AFTER_HOURS, float, 24.0),
    Variable("ingest_workers", ENV_INGEST_WORKERS, int, 4),
    Variable("deid_workers", ENV_DEID_WORKERS, int, _default_workers),
    Variable("shard_workers", ENV_SHARD_WORKERS, int, _default_workers),
    Variable("max_item_failure_fraction", ENV_MAX_ITEM_FAILURE_FRACTION, float, 0.2),
    Variable("cache_dir", ENV_CACHE_DIR, _path, lambda env, r: r["data_dir"] / ".cache" / "shards"),
    Variable("cache_max_gb", ENV_CACHE_MAX_GB, float, 50.0),
    Variable("cache_ttl_hours", ENV_CACHE_TTL_HOURS, float, 0.0),
    Variable("shard_mb", ENV_SHARD_MB, int, 256),
    Variable("specs_dir", ENV_SPECS_DIR, _path, SHIPPED_SPECS_DIR),
    Variable("catalog_url", ENV_CATALOG_URL, str, lambda env, r: f"sqlite:///{r['data_dir'] / 'catalog.sqlite'}"),
    Variable("sources_file", ENV_SOURCES, _path, SHIPPED_SOURCES),
    Variable("principal", ENV_PRINCIPAL, str, lambda env, r: LOCAL_PRINCIPAL if r["env"] == "local" else None),
)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one deployment (every field filled: defaults are resolved in
    :meth:`from_env`, nowhere else)."""

    env: str
    data_dir: Path
    store_url: str
    s3_endpoint_url: str | None
    s3_kms_key_id: str | None
    key_dir: Path
    stale_after_hours: float
    ingest_workers: int
    deid_workers: int
    shard_workers: int
    max_item_failure_fraction: float
    cache_dir: Path
    cache_max_gb: float
    cache_ttl_hours: float
    shard_mb: int
    specs_dir: Path
    catalog_url: str
    sources_file: Path
    principal: str | None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read the environment (``overrides``, keyed by field, win), check it, and return the settings."""
        env = os.environ if env is None else env
        unknown = set(overrides) - {v.field for v in VARIABLES} - {"limits"}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        resolved: dict[str, Any] = {}
        for variable in VARIABLES:
            resolved[variable.field] = variable.resolve(overrides.get(variable.field), env, resolved)
        limits = overrides.get("limits")
        settings = cls(**resolved, limits=limits if isinstance(limits, Limits) else Limits.from_env(env))
        settings.check(env)
        return settings

    def check(self, env: Mapping[str, str]) -> None:
        """Refuse configurations that would put keys beside data or run production on defaults."""
        if self.env not in ("local", "production"):
            raise SettingsError(f"{ENV} must be 'local' or 'production', got {self.env!r}")
        # resolve(): a symlink (or a `..` path) that points into the data folder is inside it.
        key_dir, data_dir = self.key_dir.resolve(), self.data_dir.resolve()
        if key_dir == data_dir or data_dir in key_dir.parents:
            raise SettingsError(
                f"{ENV_KEY_DIR} must lie outside the data folder {data_dir} (symlinks resolved; "
                f"{self.key_dir} is inside it): point it at a folder outside"
            )
        for name, workers in ((ENV_DEID_WORKERS, self.deid_workers), (ENV_SHARD_WORKERS, self.shard_workers)):
            if workers < 1:
                raise SettingsError(f"{name} must be 1 or more (1: no worker processes)")
        for name, count in ((ENV_INGEST_WORKERS, self.ingest_workers), (ENV_SHARD_MB, self.shard_mb)):
            if count < 1:
                raise SettingsError(f"{name} must be 1 or more")
        if not 0.0 <= self.max_item_failure_fraction <= 1.0:
            raise SettingsError(f"{ENV_MAX_ITEM_FAILURE_FRACTION} must be between 0 and 1")
        if self.env == "production" and self.store_url.startswith("s3://") and not self.s3_kms_key_id:
            raise SettingsError(
                f"production writes the PHI zones on S3 with SSE-KMS: set {ENV_S3_KMS_KEY_ID} to the KMS key id or "
                "ARN (on top of the envelope encryption)"
            )
        for required in (ENV_MASTER_KEY, "CLINICAL_PIPELINES_DEID_KEY"):
            if self.env == "production" and not env.get(required):
                raise SettingsError(
                    f"production needs {required} from your secret manager: it is not set "
                    f"({ENV}=production never generates keys)"
                )

    def open_store(self) -> ObjectStore:
        """The object store holding every zone (imported lazily so settings stay cheap to load)."""
        from clinical_pipelines.storage import open_store

        return open_store(self.store_url, endpoint_url=self.s3_endpoint_url, kms_key_id=self.s3_kms_key_id)

    def keyring(self) -> KeyRing:
        """The master-key ring: the environment's key if set, else the local key folder (created once)."""
        return load_keyring(self.key_dir, production=self.env == "production")
