"""Object store on an S3 (or S3-compatible) bucket through boto3."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from clinical_pipelines.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectAlreadyExists,
    ObjectInfo,
    ObjectNotFound,
    Verify,
    join_key,
    validate_key,
)

#: Zones holding PHI (envelope-encrypted by us): written with SSE-KMS on top when the store has a KMS key id.
PHI_ZONES = ("raw", "quarantine", "landing")
#: The archive zone is cold: written in this storage class (instant retrieval, so a copy can be verified at once).
ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
# S3 parts must be >= 5 MiB except the last; 8 MiB keeps memory bounded per upload.
PART_SIZE = DEFAULT_CHUNK_SIZE
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


class _BodyReader(io.RawIOBase):
    """A readable raw stream over a botocore StreamingBody."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3ObjectStore:
    """Objects live in ``bucket`` under ``prefix``; keys are relative to that prefix.

    Uploads are single PUTs up to 8 MiB and multipart above, streamed part by
    part. Write-once puts use ``If-None-Match: *`` so the bucket itself refuses
    an overwrite (HTTP 412), with no read-then-write race. With ``kms_key_id``,
    objects of the PHI zones (:data:`PHI_ZONES`) are written with SSE-KMS under
    that key, on top of the envelope encryption their bytes already carry.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        kms_key_id: str | None = None,
    ) -> None:
        import boto3

        self.kms_key_id = kms_key_id
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region_name)

    def _k(self, key: str, *, foreign: bool = False) -> str:
        return join_key(self.prefix, validate_key(key, foreign=foreign))

    def _k_readable(self, key: str) -> str | None:
        """The full key for a read of a (possibly source-chosen) key, or None if S3 cannot hold it."""
        full = self._k(key, foreign=True)
        try:
            return full if len(full.encode("utf-8")) <= MAX_KEY_BYTES else None
        except UnicodeEncodeError:  # bytes that are not UTF-8: no S3 key has them
            return None

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    # -- reads ---------------------------------------------------------------
    def open_read(self, key: str) -> BinaryIO:
        """Stream ``key`` from the bucket."""
        full = self._k_readable(key)
        if full is None:
            raise ObjectNotFound(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        return io.BufferedReader(_BodyReader(response["Body"]), buffer_size=DEFAULT_CHUNK_SIZE)  # type: ignore[return-value]

    def head(self, key: str) -> ObjectInfo | None:
        """Size and mtime of ``key``, or None when absent."""
        full = self._k_readable(key)
        if full is None:
            return None
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            last_modified=r["LastModified"].timestamp(),
            etag=str(r.get("ETag", "")).strip('"'),
        )

    def list(self, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, page by page (``page_size`` keys per request)."""
        full_prefix = join_key(self.prefix, prefix) + ("/" if prefix.endswith("/") else "")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix, "MaxKeys": page_size}
        if start_after:
            kwargs["StartAfter"] = join_key(self.prefix, start_after)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(**kwargs):
            for obj in page.get("Contents", []):
                yield self._info(obj)

    def _info(self, obj: dict[str, Any]) -> ObjectInfo:
        """An object of a listing page, keyed relative to the store's prefix."""
        return ObjectInfo(
            key=self._rel(obj["Key"]),
            size=int(obj["Size"]),
            last_modified=obj["LastModified"].timestamp(),
            etag=str(obj.get("ETag", "")).strip('"'),
        )

    def _delimited_pages(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(full prefix, page) of a delimiter listing of the level directly under ``prefix``."""
        folder = join_key(self.prefix, prefix.strip("/"))
        full_prefix = f"{folder}/" if folder else ""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, Delimiter="/"):
            yield full_prefix, page

    def list_children(self, prefix: str) -> Iterator[str]:
        """Immediate child "folders" of ``prefix`` through a delimiter listing."""
        for full_prefix, page in self._delimited_pages(prefix):
            for cp in page.get("CommonPrefixes", []):
                yield cp["Prefix"][len(full_prefix) :].rstrip("/")

    def list_files_here(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects directly under ``prefix`` (not in its sub-folders), through a delimiter listing."""
        for _, page in self._delimited_pages(prefix):
            for obj in page.get("Contents", []):
                yield self._info(obj)

    # -- writes --------------------------------------------------------------
    def put_stream(
        self, key: str, stream: BinaryIO, *, write_once: bool = False, verify: Verify | None = None
    ) -> ObjectInfo:
        """Upload ``stream``: one PUT when it fits in a part, else multipart."""
        full = self._k(key)
        first = _read_full(stream, PART_SIZE)
        if len(first) < PART_SIZE:
            if verify is not None:
                verify()
            return self._put_single(key, full, first, write_once)
        extra = {"IfNoneMatch": "*"} if write_once else {}
        if write_once and self.head(key) is not None:
            raise ObjectAlreadyExists(key)
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=full, **self._sse(key))["UploadId"]
        try:
            parts, size, chunk, number = [], 0, first, 1
            while chunk:
                r = self.client.upload_part(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": r["ETag"], "PartNumber": number})
                size += len(chunk)
                number += 1
                chunk = _read_full(stream, PART_SIZE)
            if verify is not None:
                verify()
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **extra,
                )
            except Exception as exc:
                if _error_code(exc) in ("PreconditionFailed", "412"):
                    raise ObjectAlreadyExists(key) from None
                raise
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise
        return self.head(key) or ObjectInfo(key=key, size=size, last_modified=0.0)

    def _sse(self, key: str) -> dict[str, str]:
        """Per-zone write arguments for ``key``: SSE-KMS in the PHI zones (with a KMS key id), the archive storage
        class in the archive zone."""
        zone = key.split("/", 1)[0]
        if self.kms_key_id and zone in PHI_ZONES:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        if zone == "archive":
            return {"StorageClass": ARCHIVE_STORAGE_CLASS}
        return {}

    def _put_single(self, key: str, full: str, data: bytes, write_once: bool) -> ObjectInfo:
        extra = {"IfNoneMatch": "*", **self._sse(key)} if write_once else self._sse(key)
        try:
            r = self.client.put_object(Bucket=self.bucket, Key=full, Body=data, **extra)
        except Exception as exc:
            if _error_code(exc) in ("PreconditionFailed", "412"):
                raise ObjectAlreadyExists(key) from None
            raise
        return ObjectInfo(key=key, size=len(data), last_modified=0.0, etag=str(r.get("ETag", "")).strip('"'))

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        """Upload a small value; see :meth:`put_stream`."""
        return self.put_stream(key, io.BytesIO(data), write_once=write_once)

    def sweep_temp_files(self, *, min_age_s: float = 24 * 3600) -> int:
        """Abort multipart uploads under this store's prefix begun more than ``min_age_s`` ago.

        A run killed mid-upload leaves its parts in the bucket, invisible and billed; this is the S3
        side of the local store's temp-file sweep (live uploads are younger than the bound).
        """
        import time

        removed, cutoff = 0, time.time() - min_age_s
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() <= cutoff:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed

    def delete(self, key: str) -> None:
        """Remove ``key`` (absent keys are fine)."""
        full = self._k_readable(key)
        if full is not None:
            self.client.delete_object(Bucket=self.bucket, Key=full)


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; b"" only at end of stream."""
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
