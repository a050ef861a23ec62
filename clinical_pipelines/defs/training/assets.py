"""Training-ready assets: shards + index of the latest curated version, with reader metrics as metadata."""

import hashlib

import dagster as dg

from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.defs.catalog_info import TRAINING_KINDS, spec_owners
from clinical_pipelines.defs.curate.assets import curated_key
from clinical_pipelines.defs.datasets import TRAINING_GROUP
from clinical_pipelines.defs.resources import CatalogResource, ObjectStoreResource, TrainingResource
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.version import code_version


def training_key(dataset: str) -> dg.AssetKey:
    """Asset key of one dataset's training-ready shards."""
    return dg.AssetKey([TRAINING_GROUP, dataset])


def _latest_manifest(context: dg.AssetExecutionContext, store: ObjectStore, dataset: str) -> tuple[str, str]:
    """``(manifest key, version id)`` from the curated asset's latest materialization, else from the store."""
    from clinical_pipelines.training.manifest import latest_manifest_key

    event = context.instance.get_latest_materialization_event(curated_key(dataset))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    entry = metadata.get("manifest") or metadata.get("manifest_key")
    key = str(entry.value) if entry is not None else latest_manifest_key(store, dataset)
    if key is None:
        raise dg.Failure(f"curated dataset {dataset} has no version yet: materialize {curated_key(dataset)} first")
    version_id = metadata.get("version_id")
    return key, str(version_id.value) if version_id is not None else key.rsplit("/", 1)[-1].removesuffix(".json")


def training_asset(dataset: str, owners: list[str] | None = None) -> dg.AssetsDefinition:
    """The asset building ``training/<dataset>`` from the latest version of ``curated/<dataset>``."""

    @dg.asset(
        key=training_key(dataset),
        deps=[curated_key(dataset)],
        group_name=TRAINING_GROUP,
        description=f"Training-ready shards of the latest {dataset} version: WebDataset-compatible tar shards "
        "per split (decoded pixels + JSON), an index (sample -> shard, offset, length, sha256), read back "
        "through the local shard cache to verify every shard and measure the reader.",
        automation_condition=dg.AutomationCondition.eager(),
        tags={"phi": "false"},
        kinds=TRAINING_KINDS,
        owners=owners,
    )
    def _training(
        context: dg.AssetExecutionContext, object_store: ObjectStoreResource, training: TrainingResource,
        catalog: CatalogResource,
    ) -> dg.MaterializeResult:
        from clinical_pipelines.curate.lifecycle import OUT_OF_TRAINING, version_state
        from clinical_pipelines.training import ReaderMetrics, StreamingDataset, build_training_shards

        store = object_store.get_store()
        manifest_key, version_id = _latest_manifest(context, store, dataset)
        state = version_state(catalog.get_catalog(), version_id)
        if state in OUT_OF_TRAINING:  # archived or expired: its shards were removed on purpose, never rebuilt
            context.log.info(f"{dataset}: version {version_id[:12]} is {state}; no training shards")
            return dg.MaterializeResult(metadata={"version_id": dg.MetadataValue.text(version_id),
                                                  "skipped": dg.MetadataValue.text(f"version is {state}")})  # fmt: skip
        data = read_all(store, manifest_key)
        if hashlib.sha256(data).hexdigest() != version_id:
            raise dg.Failure(f"manifest {manifest_key} does not hash to its version id {version_id}")
        report = build_training_shards(
            store, data, shard_target_bytes=training.shard_mb * 1024 * 1024, processes=training.build_processes
        )
        index = report.index
        metadata: dict[str, dg.MetadataValue] = {
            "dataset": dg.MetadataValue.text(dataset),
            "version_id": dg.MetadataValue.text(version_id),
            "manifest": dg.MetadataValue.path(manifest_key),
            "index": dg.MetadataValue.path(report.index_key),
            "format": dg.MetadataValue.text("webdataset-tar (uncompressed POSIX tar; .json/.npy/.txt/.csv members)"),
            "samples_per_split": dg.MetadataValue.json(index.splits),
            "shards": dg.MetadataValue.int(len(index.shards)),
            "shard_target_bytes": dg.MetadataValue.int(index.shard_target_bytes),
            "bytes": dg.MetadataValue.int(sum(s.size for s in index.shards)),
            "reused_existing_shards": dg.MetadataValue.bool(report.reused),
            "build_seconds": dg.MetadataValue.float(round(report.seconds, 3)),
            "build_samples_per_s": dg.MetadataValue.float(round(report.samples_per_s, 1)),
            "code_version": dg.MetadataValue.text(code_version()),
        }
        if training.verify_read:
            cache, metrics = training.shard_cache(), ReaderMetrics()
            for split in sorted(index.splits):  # read every split back: verifies each shard's sha256 on fetch
                reader = StreamingDataset(store, index, split, cache, shuffle=False)
                reader.metrics = metrics
                for _ in reader:
                    pass
            for name, value in metrics.as_dict().items():
                metadata[f"reader_{name}"] = dg.MetadataValue.float(float(value))
        context.log.info(f"{dataset}: {len(index.shards)} shard(s), {index.splits} samples ({version_id[:12]})")
        return dg.MaterializeResult(data_version=dg.DataVersion(version_id), metadata=metadata)

    _training.__name__ = f"training_{dataset}"
    return _training


def training_assets(specs: list[DatasetSpec]) -> list[dg.AssetsDefinition]:
    """One training-ready asset per curated dataset spec."""
    return [training_asset(spec.name, spec_owners(spec.owner)) for spec in specs]
