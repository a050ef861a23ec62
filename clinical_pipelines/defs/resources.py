"""Dagster resources over the plain-Python engines, and their per-environment assembly."""

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from clinical_pipelines.catalog.repository import Catalog
    from clinical_pipelines.deid.dicom import DicomDeidentifier
    from clinical_pipelines.deid.notes import NoteDeidentifier
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer
    from clinical_pipelines.limits import Limits
    from clinical_pipelines.training.cache import ShardCache

from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import ObjectStore, open_store
from clinical_pipelines.storage.keys import KeyRing, load_keyring


class ObjectStoreResource(dg.ConfigurableResource):
    """The object store holding every zone (local folder or S3)."""

    url: str
    endpoint_url: str | None = None
    kms_key_id: str | None = None  # SSE-KMS key for the PHI zones on S3 (an id, not key material)
    _store: ObjectStore | None = PrivateAttr(default=None)

    def get_store(self) -> ObjectStore:
        """The store, opened once per process."""
        if self._store is None:
            self._store = open_store(self.url, endpoint_url=self.endpoint_url, kms_key_id=self.kms_key_id)
        return self._store


class KeyRingResource(dg.ConfigurableResource):
    """Master keys for envelope encryption.

    Only the key folder's location is configuration; key material comes from
    the environment or the folder at run time and never enters run config.
    """

    key_dir: str
    production: bool = False  # production: the key comes from the environment only, never generated
    _ring: KeyRing | None = PrivateAttr(default=None)

    def get_keyring(self) -> KeyRing:
        """The ring, loaded (or created, in the local default) once per process."""
        if self._ring is None:
            from pathlib import Path

            # production=None still refuses when this worker's own environment says production
            self._ring = load_keyring(Path(self.key_dir), production=self.production or None)
        return self._ring

    def get_audit_signing_key(self) -> "Ed25519PrivateKey":
        """The Ed25519 key signing audit exports, kept with the master keys (production: configuration only)."""
        from pathlib import Path

        from clinical_pipelines.catalog.audit_export import load_signing_key

        return load_signing_key(Path(self.key_dir), production=self.production or None)


class LandingSettingsResource(dg.ConfigurableResource):
    """Landing-zone behaviour."""

    stale_after_hours: float = 24.0
    ingest_workers: int = 4
    sources_file: str = ""  # the sources YAML (clinical_pipelines.landing.sources); "": the shipped one


class LimitsResource(dg.ConfigurableResource):
    """Resource limits on what a source may send (``clinical_pipelines.limits``; each has its quarantine reason)."""

    max_dicom_bytes: int
    max_note_bytes: int
    max_table_bytes: int
    max_inflated_bytes: int
    max_pixel_bytes: int
    max_note_chars: int
    max_table_cells: int
    notes_batch: int
    max_drop_files: int  # entries one drop.json may list; beyond, the drop is quarantined whole

    def limits(self) -> "Limits":
        """The engines' view of these limits."""
        from clinical_pipelines.limits import Limits

        return Limits(**{name: getattr(self, name) for name in Limits.__dataclass_fields__})

    @classmethod
    def of(cls, limits: "Limits") -> "LimitsResource":
        """The resource holding ``limits``."""
        return cls(**{name: getattr(limits, name) for name in type(limits).__dataclass_fields__})


class ValidationSettingsResource(dg.ConfigurableResource):
    """How much failure a drop may carry and still be promoted."""

    max_item_failure_fraction: float = 0.2


class DeidSecretResource(dg.ConfigurableResource):
    """The de-identification secret (``CLINICAL_PIPELINES_DEID_KEY`` or the local key folder's ``deid.secret``).

    Only the folder's location is configuration; the secret never enters run config or metadata.
    """

    key_dir: str
    create_if_missing: bool = True  # the embedded default only; production reads configuration
    workers: int = 1  # warm processes de-identifying a drop's DICOM (1: in the step's own process)

    def pseudonymizer(self) -> "Pseudonymizer":
        """A pseudonymizer keyed by the configured secret."""
        from pathlib import Path

        from clinical_pipelines.deid.pseudonyms import Pseudonymizer
        from clinical_pipelines.deid.secret import load_deid_key

        return Pseudonymizer(load_deid_key(Path(self.key_dir), create=self.create_if_missing))

    def engines(self) -> "tuple[Pseudonymizer, DicomDeidentifier, NoteDeidentifier]":
        """Pseudonymizer, DICOM and notes de-identifiers for the configured secret, warm across drops
        (built once per process: :func:`clinical_pipelines.deid.stage.warm_engines`)."""
        from pathlib import Path

        from clinical_pipelines.deid.secret import load_deid_key
        from clinical_pipelines.deid.stage import warm_engines

        return warm_engines(load_deid_key(Path(self.key_dir), create=self.create_if_missing))


class CatalogResource(dg.ConfigurableResource):
    """The dataset catalog (SQLAlchemy URL: SQLite file by default, PostgreSQL in production).

    A PostgreSQL password belongs in ``PGPASSWORD`` / ``~/.pgpass``, never in this URL (it is run config).
    """

    url: str
    store_url: str = ""
    _catalog: "Catalog | None" = PrivateAttr(default=None)

    def get_catalog(self) -> "Catalog":
        """The catalog, connected and migrated once per process."""
        if self._catalog is None:
            from clinical_pipelines.catalog.repository import Catalog

            self._catalog = Catalog.open(self.url, store_url=self.store_url)
        return self._catalog


class TrainingResource(dg.ConfigurableResource):
    """Where training shards are cached on this machine, how big the cache may grow, and the shard size."""

    cache_dir: str
    cache_max_gb: float = 50.0
    cache_ttl_hours: float = 0.0
    shard_mb: int = 256
    verify_read: bool = True  # read every built shard back through the cache (fills the metrics)
    build_processes: int = 1  # worker processes decoding compressed pixel data during the build

    def shard_cache(self) -> "ShardCache":
        """The local shard cache (size bound and TTL as configured; 0 means none)."""
        from clinical_pipelines.training.cache import ShardCache

        return ShardCache.bounded(self.cache_dir, max_gb=self.cache_max_gb, ttl_hours=self.cache_ttl_hours)


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources for ``settings`` (the same shapes locally and in production; only values differ)."""
    return {
        "object_store": ObjectStoreResource(url=settings.store_url, endpoint_url=settings.s3_endpoint_url,
                                            kms_key_id=settings.s3_kms_key_id),
        "keyring": KeyRingResource(key_dir=str(settings.key_dir), production=settings.env == "production"),
        "landing": LandingSettingsResource(
            stale_after_hours=settings.stale_after_hours,
            ingest_workers=settings.ingest_workers,
            sources_file=str(settings.sources_file),
        ),
        "limits": LimitsResource.of(settings.limits),
        "validation": ValidationSettingsResource(max_item_failure_fraction=settings.max_item_failure_fraction),
        "deid_secret": DeidSecretResource(
            key_dir=str(settings.key_dir), create_if_missing=settings.env == "local", workers=settings.deid_workers
        ),
        "training": TrainingResource(
            cache_dir=str(settings.cache_dir),
            cache_max_gb=settings.cache_max_gb,
            cache_ttl_hours=settings.cache_ttl_hours,
            shard_mb=settings.shard_mb,
            build_processes=settings.shard_workers,
        ),
        "catalog": CatalogResource(
            url=settings.catalog_url,
            store_url=settings.store_url,
        ),
    }
