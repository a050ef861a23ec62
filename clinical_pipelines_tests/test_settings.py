"""Settings come from one table: every field has one variable and one default, resolved in one place."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from clinical_pipelines.defs.resources import resources_for
from clinical_pipelines.settings import VARIABLES, Settings, SettingsError


def test_the_table_names_every_field_once_with_its_own_variable() -> None:
    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "limits"]  # limits: limits.py's own table
    assert sorted(v.field for v in VARIABLES) == sorted(fields)
    names = [v.name for v in VARIABLES]
    assert len(set(names)) == len(names) and all(n.startswith("CLINICAL_PIPELINES_") for n in names)


def test_explicit_zero_is_honoured_from_overrides_and_from_the_environment(tmp_path: Path) -> None:
    env = {"CLINICAL_PIPELINES_CACHE_MAX_GB": "0"}
    settings = Settings.from_env(env, key_dir=tmp_path / "keys", data_dir=tmp_path / "data", stale_after_hours=0)
    assert settings.stale_after_hours == 0.0  # was 24: `0 or default`
    assert settings.cache_max_gb == 0.0
    assert Settings.from_env({}, key_dir=tmp_path / "keys", data_dir=tmp_path / "data").stale_after_hours == 24.0
    with pytest.raises(SettingsError, match="CLINICAL_PIPELINES_INGEST_WORKERS must be 1 or more"):
        Settings.from_env({}, key_dir=tmp_path / "keys", data_dir=tmp_path / "data", ingest_workers=0)


def test_defaults_follow_the_data_folder_and_empty_variables_count_as_unset(tmp_path: Path) -> None:
    env = {"CLINICAL_PIPELINES_S3_ENDPOINT_URL": "", "CLINICAL_PIPELINES_STORE_URL": ""}
    settings = Settings.from_env(env, key_dir=tmp_path / "keys", data_dir=tmp_path / "data")
    assert settings.store_url == str(tmp_path / "data")
    assert settings.s3_endpoint_url is None
    assert settings.cache_dir == tmp_path / "data" / ".cache" / "shards"
    assert settings.catalog_url == f"sqlite:///{tmp_path / 'data' / 'catalog.sqlite'}"
    with pytest.raises(SettingsError, match="CLINICAL_PIPELINES_SHARD_MB must be a number, got 'big'"):
        Settings.from_env({"CLINICAL_PIPELINES_SHARD_MB": "big"}, key_dir=tmp_path / "keys", data_dir=tmp_path / "data")
    with pytest.raises(TypeError, match="unknown settings: data_folder"):
        Settings.from_env({}, data_folder=tmp_path)


def test_resources_take_the_resolved_values_as_they_are(tmp_path: Path) -> None:
    env = {"CLINICAL_PIPELINES_CACHE_DIR": str(tmp_path / "cache"), "CLINICAL_PIPELINES_CATALOG_URL": "sqlite:///x.db"}
    settings = Settings.from_env(env, key_dir=tmp_path / "keys", data_dir=tmp_path / "data")
    resources = resources_for(settings)
    assert resources["training"].cache_dir == str(tmp_path / "cache")  # type: ignore[attr-defined]
    assert resources["catalog"].url == "sqlite:///x.db"  # type: ignore[attr-defined]
    assert resources["landing"].stale_after_hours == settings.stale_after_hours  # type: ignore[attr-defined]
