"""The production configuration for real: PostgreSQL Dagster storage (infra/dagster.production.yaml) and an
environment-supplied master key, over the machine's PostgreSQL."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import inspect

from clinical_pipelines.catalog.db import VERSION_TABLE, make_engine
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.headless import process_landing
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.keys import load_keyring
from clinical_pipelines_tests.conftest import PG
from clinical_pipelines_tests.corpus import put_drops, small_corpus

REPO = Path(__file__).resolve().parent.parent


def _production_env(monkeypatch: pytest.MonkeyPatch, pg_database: str, **extra: str) -> None:
    """The production environment: Dagster storage on ``pg_database``, keys from the environment (fresh ones)."""
    env = {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_DB": pg_database,
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "CLINICAL_PIPELINES_ENV": "production",
        "CLINICAL_PIPELINES_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CLINICAL_PIPELINES_DEID_KEY": base64.b64encode(os.urandom(32)).decode(),
        **extra,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.postgres
def test_drop_run_on_postgres_storage_with_an_environment_master_key(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.production.yaml", home / "dagster.yaml")
    _production_env(monkeypatch, pg_database, CLINICAL_PIPELINES_MASTER_KEY_ID="kms-test-1")
    settings = Settings.from_env(data_dir=tmp_path / "data", key_dir=tmp_path / "no-keys-here")
    drops, _ = small_corpus()
    put_drops(settings.open_store(), drops[:1])
    key = f"{drops[0].source}/{drops[0].drop_id}"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        instance.add_dynamic_partitions("drops", [key])
        job = build_definitions(settings).resolve_job_def("process_drop")
        assert job.execute_in_process(instance=instance, partition_key=key).success
    with dg.DagsterInstance.from_config(str(home)) as reopened:  # durable in PostgreSQL, not in memory
        records = reopened.fetch_materializations(dg.AssetKey(["raw", "dicom"]), limit=10).records
        assert [r.partition_key for r in records] == [key]
        assert records[0].asset_materialization.metadata["master_key_ids"].value == "kms-test-1"  # type: ignore[union-attr]
    assert not (tmp_path / "no-keys-here").exists()  # production never generates a local key
    record = RawZone(settings.open_store(), load_keyring(tmp_path / "unused")).read_drop_record(*key.split("/"))
    assert len(record.files) == len(drops[0].files)


@pytest.mark.postgres
@pytest.mark.parametrize("catalog_db", ["same as Dagster's", "its own"])
def test_landing_to_shards_with_dagster_storage_and_the_catalog_on_postgres(
    catalog_db: str, tmp_path: Path, pg_database: str, second_pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's storage and the catalog on PostgreSQL, in one database (two Alembic histories side by side)
    or in two: every drop of one source through every stage, then curated versions and their shards."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.production.yaml", home / "dagster.yaml")
    catalog_database = pg_database if catalog_db == "same as Dagster's" else second_pg_database
    _production_env(
        monkeypatch,
        pg_database,
        CLINICAL_PIPELINES_CATALOG_URL=f"postgresql+psycopg2://{PG['user']}@{PG['host']}/{catalog_database}",
    )
    settings = Settings.from_env(data_dir=tmp_path / "data", key_dir=tmp_path / "no-keys-here")
    drops, _ = small_corpus()
    put_drops(settings.open_store(), [d for d in drops if d.source == drops[0].source])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        summary = process_landing(settings, instance)
    assert summary.drops and not summary.failed, summary.failed
    assert summary.curated is not None and summary.curated.success, summary.curated
    built = {o.dataset: o for o in summary.curated.datasets if o.version_id}
    assert built and all(o.shards > 0 for o in built.values()), summary.curated.datasets
    catalog = Catalog.open(settings.catalog_url)
    try:
        assert {catalog.show(name)["version_id"] for name in built} == {o.version_id for o in built.values()}
    finally:
        catalog.close()
    engine = make_engine(settings.catalog_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert VERSION_TABLE in tables and ("alembic_version" in tables) == (catalog_db == "same as Dagster's")
