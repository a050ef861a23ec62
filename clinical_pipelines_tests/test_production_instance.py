"""The production configuration for real: PostgreSQL Dagster storage (infra/dagster.production.yaml) and an
environment-supplied master key, over the machine's PostgreSQL."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.keys import load_keyring
from clinical_pipelines_tests.conftest import PG
from clinical_pipelines_tests.corpus import put_drops, small_corpus

REPO = Path(__file__).resolve().parent.parent
@pytest.mark.postgres
def test_drop_run_on_postgres_storage_with_an_environment_master_key(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "infra" / "dagster.production.yaml", home / "dagster.yaml")
    master = os.urandom(32)
    env = {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_DB": pg_database,
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "CLINICAL_PIPELINES_ENV": "production",
        "CLINICAL_PIPELINES_MASTER_KEY": base64.b64encode(master).decode(),
        "CLINICAL_PIPELINES_MASTER_KEY_ID": "kms-test-1",
        "CLINICAL_PIPELINES_DEID_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
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
