"""SSE-KMS on the PHI zones, on moto's S3 and KMS server over HTTP: raw, quarantine and landing objects (single PUT
and multipart) are written under the configured KMS key, on top of the envelope encryption; other zones are not;
production on S3 refuses to start without a key id."""

from __future__ import annotations

import base64
import io
import os

import boto3
import pytest

from clinical_pipelines.settings import Settings, SettingsError
from clinical_pipelines.storage import open_store
from clinical_pipelines.storage.s3 import PART_SIZE, S3ObjectStore
from clinical_pipelines_tests.conftest import make_bucket


def test_phi_zones_are_written_with_sse_kms_under_the_configured_key(s3_endpoint: str) -> None:
    key_id = boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    bucket = make_bucket(s3_endpoint)
    store = open_store(f"s3://{bucket}/zones", endpoint_url=s3_endpoint, region_name="us-east-1", kms_key_id=key_id)
    assert isinstance(store, S3ObjectStore)
    big = os.urandom(PART_SIZE + 1024)  # multipart
    writes = {"raw/objects/a": b"x" * 100, "raw/objects/big": big, "quarantine/s/d/f.enc": b"q", "landing/s/d/f": b"l",
              "curated/objects/b": b"c", "training/t/index.json": b"{}"}  # fmt: skip
    for key, data in writes.items():
        store.put_stream(key, io.BytesIO(data), write_once=key.startswith("raw/"))
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for key in writes:
        head = client.head_object(Bucket=bucket, Key=f"zones/{key}")
        if key.split("/", 1)[0] in ("raw", "quarantine", "landing"):
            assert head.get("ServerSideEncryption") == "aws:kms", key
            assert str(head.get("SSEKMSKeyId", "")).endswith(key_id), (key, head.get("SSEKMSKeyId"))
        else:
            assert head.get("ServerSideEncryption") != "aws:kms", key
    assert store.open_read("raw/objects/big").read() == big  # and read back as written
    plain = open_store(f"s3://{bucket}/zones", endpoint_url=s3_endpoint, region_name="us-east-1")
    plain.put_bytes("raw/objects/c", b"y")
    assert client.head_object(Bucket=bucket, Key="zones/raw/objects/c").get("ServerSideEncryption") != "aws:kms"


def test_production_on_s3_needs_a_kms_key_id(tmp_path: object) -> None:
    env = {"CLINICAL_PIPELINES_ENV": "production", "CLINICAL_PIPELINES_STORE_URL": "s3://bucket/zones",
           "CLINICAL_PIPELINES_MASTER_KEY": base64.b64encode(b"m" * 32).decode(),
           "CLINICAL_PIPELINES_DEID_KEY": base64.b64encode(b"d" * 32).decode(),
           "CLINICAL_PIPELINES_KEY_DIR": "/tmp/cp-kms-test-keys"}  # fmt: skip
    with pytest.raises(SettingsError, match="set CLINICAL_PIPELINES_S3_KMS_KEY_ID"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "CLINICAL_PIPELINES_S3_KMS_KEY_ID": "alias/clinical-phi"})
    assert settings.s3_kms_key_id == "alias/clinical-phi"
    local = Settings.from_env({**env, "CLINICAL_PIPELINES_STORE_URL": "/tmp/cp-kms-local"})
    assert local.s3_kms_key_id is None  # a local store has no SSE to ask for
