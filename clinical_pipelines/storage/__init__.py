"""Object stores (local folder, S3) and envelope encryption. No Dagster here."""

from clinical_pipelines.storage.base import (
    ObjectAlreadyExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StoreError,
    UnsafeKey,
    join_key,
    read_all,
    validate_key,
)
from clinical_pipelines.storage.factory import open_store

__all__ = [
    "ObjectAlreadyExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "StoreError",
    "UnsafeKey",
    "join_key",
    "open_store",
    "read_all",
    "validate_key",
]
