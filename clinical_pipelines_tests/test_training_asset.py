"""The Dagster training-ready asset: finds the latest curated version, builds shards, records reader metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from clinical_pipelines.defs.curate.assets import curated_key
from clinical_pipelines.defs.resources import CatalogResource, ObjectStoreResource, TrainingResource
from clinical_pipelines.defs.training.assets import training_asset, training_key
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import ShardIndex
from clinical_pipelines.zones import curated_manifest_key, training_index_key
from clinical_pipelines_tests.test_training_support import manifest_bytes, put_corpus


def _materialize(instance: dg.DagsterInstance, store: LocalObjectStore, cache: Path) -> dict[str, object]:
    result = dg.materialize(
        [training_asset("demo")],
        instance=instance,
        resources={
            "object_store": ObjectStoreResource(url=str(store.root)),
            "training": TrainingResource(cache_dir=str(cache), shard_mb=1),
            "catalog": CatalogResource(url=f"sqlite:///{cache.parent / 'catalog.sqlite'}"),
        },
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == training_key("demo")
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_training_asset_builds_from_the_curated_materialization(local_store: LocalObjectStore, tmp_path: Path) -> None:
    older = manifest_bytes({**put_corpus(local_store, patients=3), "version": 1})
    newer = manifest_bytes({**put_corpus(local_store, patients=6), "version": 2})
    for data in (older, newer):
        local_store.put_bytes(curated_manifest_key("demo", hashlib.sha256(data).hexdigest()), data)
    version_id = hashlib.sha256(newer).hexdigest()
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=curated_key("demo"),
                metadata={
                    "manifest": dg.MetadataValue.path(curated_manifest_key("demo", version_id)),
                    "version_id": dg.MetadataValue.text(version_id),
                },
            )
        )
        first = _materialize(instance, local_store, tmp_path / "cache")
        again = _materialize(instance, local_store, tmp_path / "cache")
    index = ShardIndex.load(local_store, training_index_key("demo", version_id))
    assert first["version_id"] == version_id and first["index"] == training_index_key("demo", version_id)
    assert first["samples_per_split"] == index.splits and sum(index.splits.values()) == 6 * 5
    assert first["reused_existing_shards"] is False and again["reused_existing_shards"] is True
    assert first["reader_cache_hit_rate"] == 0.0 and first["reader_bytes_fetched"] == first["bytes"]
    assert again["reader_cache_hit_rate"] == 1.0 and again["reader_bytes_fetched"] == 0.0
    assert first["reader_samples"] == 30 and first["reader_samples_per_s"] > 0 and "reader_io_wait_s" in first


def test_without_a_curated_materialization_the_latest_stored_version_is_used(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    for version, patients in ((2, 4), (1, 2)):
        data = manifest_bytes({**put_corpus(local_store, patients=patients), "version": version})
        local_store.put_bytes(curated_manifest_key("demo", hashlib.sha256(data).hexdigest()), data)
        if version == 2:
            expected = hashlib.sha256(data).hexdigest()
    with dg.instance_for_test() as instance:
        metadata = _materialize(instance, local_store, tmp_path / "cache")
    assert metadata["version_id"] == expected
