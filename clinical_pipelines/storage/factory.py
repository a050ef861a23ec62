"""Build an object store from a URL: ``file:///path``, a plain path, or ``s3://bucket/prefix``."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from clinical_pipelines.storage.base import ObjectStore


def open_store(url: str, *, endpoint_url: str | None = None, region_name: str | None = None,
               kms_key_id: str | None = None) -> ObjectStore:  # fmt: skip
    """Return the store ``url`` names; S3 honours ``endpoint_url`` (moto, MinIO, ...) and writes its PHI zones with
    SSE-KMS under ``kms_key_id`` when given."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from clinical_pipelines.storage.s3 import S3ObjectStore

        if not parsed.netloc:
            raise ValueError(f"S3 store URL needs a bucket: {url!r}")
        return S3ObjectStore(parsed.netloc, parsed.path, endpoint_url=endpoint_url, region_name=region_name,
                             kms_key_id=kms_key_id)  # fmt: skip
    if parsed.scheme in ("", "file"):
        from clinical_pipelines.storage.local import LocalObjectStore

        return LocalObjectStore(unquote(parsed.path) if parsed.scheme == "file" else url)
    raise ValueError(f"unsupported object-store URL scheme {parsed.scheme!r} (use a path, file:// or s3://)")
