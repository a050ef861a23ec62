"""Shared fixtures: real stores (a local folder, and S3 on moto's standalone server over HTTP), key folders."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg2
import pytest

from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.keys import KeyRing, local_keyring
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.s3 import S3ObjectStore
from clinical_pipelines.warm_pool import shutdown_all

# The machine's PostgreSQL (.ci/run starts it when it is down).
PG = {"host": os.environ.get("CP_TEST_PG_HOST", "127.0.0.1"), "user": os.environ.get("CP_TEST_PG_USER", "postgres")}

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Never let a test touch the developer's real key folder or data folder.
os.environ.pop("CLINICAL_PIPELINES_MASTER_KEY", None)
os.environ.pop("CLINICAL_PIPELINES_STORE_URL", None)

logging.getLogger("werkzeug").setLevel(logging.WARNING)

TEST_OUTPUT = Path(__file__).resolve().parent.parent / ".test-output"


@pytest.fixture(scope="module", autouse=True)
def _stop_warm_pools() -> Iterator[None]:
    """Warm worker pools keep threads in this process: stop them at each module's end, before later tests
    fork (a fork copies no threads, only the locks they held)."""
    yield
    shutdown_all()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_bucket(endpoint: str) -> str:
    """A fresh, empty bucket on the test endpoint."""
    name = f"cp-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "data", fsync=False)


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3ObjectStore:
    return S3ObjectStore(make_bucket(s3_endpoint), "zones", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """The same test against both backends."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "data", fsync=False)
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ObjectStore(make_bucket(endpoint), "zones", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A key folder outside the data folder, also set in the environment for code that reads it."""
    path = tmp_path / "keys"
    monkeypatch.setenv("CLINICAL_PIPELINES_KEY_DIR", str(path))
    return path


@pytest.fixture
def keyring(key_dir: Path) -> KeyRing:
    return local_keyring(key_dir)


@pytest.fixture
def test_output(request: pytest.FixtureRequest) -> Path:
    """A folder kept after the run for artefacts (screenshots) of this test."""
    path = TEST_OUTPUT / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards; yields its name."""
    yield from _fresh_pg_database()


@pytest.fixture
def second_pg_database() -> Iterator[str]:
    """Another fresh database beside :func:`pg_database` (e.g. the catalog's, when it is not Dagster's)."""
    yield from _fresh_pg_database()


def _fresh_pg_database() -> Iterator[str]:
    name = f"cp_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """:func:`pg_database` as a SQLAlchemy URL."""
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}/{pg_database}"
