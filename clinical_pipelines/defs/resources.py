"""Dagster resources over the plain-Python engines, and their per-environment assembly."""

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

if TYPE_CHECKING:
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer

from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import ObjectStore, open_store
from clinical_pipelines.storage.keys import KeyRing, load_keyring


class ObjectStoreResource(dg.ConfigurableResource):
    """The object store holding every zone (local folder or S3)."""

    url: str
    endpoint_url: str | None = None
    _store: ObjectStore | None = PrivateAttr(default=None)

    def get_store(self) -> ObjectStore:
        """The store, opened once per process."""
        if self._store is None:
            self._store = open_store(self.url, endpoint_url=self.endpoint_url)
        return self._store


class KeyRingResource(dg.ConfigurableResource):
    """Master keys for envelope encryption.

    Only the key folder's location is configuration; key material comes from
    the environment or the folder at run time and never enters run config.
    """

    key_dir: str
    _ring: KeyRing | None = PrivateAttr(default=None)

    def get_keyring(self) -> KeyRing:
        """The ring, loaded (or created, in the local default) once per process."""
        if self._ring is None:
            from pathlib import Path

            self._ring = load_keyring(Path(self.key_dir))
        return self._ring


class LandingSettingsResource(dg.ConfigurableResource):
    """Landing-zone behaviour."""

    stale_after_hours: float = 24.0
    ingest_workers: int = 4


class ValidationSettingsResource(dg.ConfigurableResource):
    """How much failure a drop may carry and still be promoted."""

    max_item_failure_fraction: float = 0.2


class DeidSecretResource(dg.ConfigurableResource):
    """The de-identification secret (``CLINICAL_PIPELINES_DEID_KEY`` or the local key folder's ``deid.secret``).

    Only the folder's location is configuration; the secret never enters run config or metadata.
    """

    key_dir: str
    create_if_missing: bool = True  # the embedded default only; production reads configuration

    def pseudonymizer(self) -> "Pseudonymizer":
        """A pseudonymizer keyed by the configured secret."""
        from pathlib import Path

        from clinical_pipelines.deid.pseudonyms import Pseudonymizer
        from clinical_pipelines.deid.secret import load_deid_key

        return Pseudonymizer(load_deid_key(Path(self.key_dir), create=self.create_if_missing))


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources for ``settings`` (the same shapes locally and in production; only values differ)."""
    return {
        "object_store": ObjectStoreResource(url=settings.store_url, endpoint_url=settings.s3_endpoint_url),
        "keyring": KeyRingResource(key_dir=str(settings.key_dir)),
        "landing": LandingSettingsResource(
            stale_after_hours=settings.stale_after_hours, ingest_workers=settings.ingest_workers
        ),
        "validation": ValidationSettingsResource(max_item_failure_fraction=settings.max_item_failure_fraction),
        "deid_secret": DeidSecretResource(key_dir=str(settings.key_dir), create_if_missing=settings.env == "local"),
    }
