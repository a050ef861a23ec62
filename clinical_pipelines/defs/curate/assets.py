"""One curated asset per dataset spec: builds (or finds) the version, links manifest, catalog and lineage."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from clinical_pipelines.curate.build import BuildResult
from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.defs.catalog_info import format_kinds, spec_owners
from clinical_pipelines.defs.datasets import CURATED_GROUP
from clinical_pipelines.defs.deid.assets import deidentified_key
from clinical_pipelines.defs.resources import CatalogResource, ObjectStoreResource
from clinical_pipelines.landing.sources import restrictive
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.zones import curated_provenance_key

QUALITY_CHECK = "version_quality"
NO_MATCHING_OBJECTS = "no matching objects"
# Build after any de-identified partition lands, even while some drops are missing (stopped by a gate).
AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def curated_key(dataset: str) -> dg.AssetKey:
    """Asset key of one curated dataset."""
    return dg.AssetKey([CURATED_GROUP, dataset])


def _metadata(result: BuildResult, catalog: CatalogResource) -> dict[str, dg.MetadataValue]:
    manifest = result.manifest
    doc = manifest.doc
    return {
        "dataset": dg.MetadataValue.text(manifest.dataset),
        "version": dg.MetadataValue.int(manifest.number),
        "version_id": dg.MetadataValue.text(manifest.version_id),
        "new_version": dg.MetadataValue.bool(result.created),
        "manifest": dg.MetadataValue.path(manifest.key),
        "provenance_fhir": dg.MetadataValue.path(curated_provenance_key(manifest.dataset, manifest.version_id)),
        "parent_drops": dg.MetadataValue.json(doc["parents"]["drops"]),
        "previous_version": dg.MetadataValue.text(doc["parents"]["previous"] or "none"),
        "object_count": dg.MetadataValue.int(len(manifest.objects)),
        "bytes": dg.MetadataValue.int(manifest.total_bytes),
        "patients": dg.MetadataValue.int(manifest.patients),
        "objects_written": dg.MetadataValue.int(result.objects_written),
        "spec_sha256": dg.MetadataValue.text(doc["spec_sha256"]),
        "code_version": dg.MetadataValue.text(doc["code_version"]),
        "deid_profile": dg.MetadataValue.text(f"{doc['deid']['profile']} {doc['deid']['version']}"),
        "deid_options": dg.MetadataValue.json(doc["deid"]["options"]),
        "policy_tags": dg.MetadataValue.json(list(restrictive(result.tags or result.spec.policy_tags))),
        "labels": dg.MetadataValue.json([t for t in result.tags if ":" in t]),
        "owner": dg.MetadataValue.text(result.spec.owner),
        "retention": dg.MetadataValue.text(result.spec.retention),
        "project": dg.MetadataValue.text(result.spec.project_name),
        "catalog_entry": dg.MetadataValue.text(
            f"{catalog.get_catalog().url} datasets/{manifest.dataset}@{manifest.number} "
            f"(clinical-pipelines catalog show {manifest.dataset}@{manifest.number})"
        ),
    }


def _build(spec: DatasetSpec) -> dg.AssetsDefinition:
    key = curated_key(spec.name)

    @dg.asset(
        key=key,
        deps=[deidentified_key(m) for m in DROP_MODALITIES],
        group_name=CURATED_GROUP,
        description=f"{spec.purpose} (spec {Path(spec.path).name}; owner {spec.owner}; retention {spec.retention})",
        code_version=spec.sha256[:16],
        automation_condition=AUTOMATION,
        output_required=False,
        check_specs=[
            dg.AssetCheckSpec(
                name=QUALITY_CHECK,
                asset=key,
                blocking=True,  # a version failing an error-level check must not feed training shards
                description="Objects present, no patient in two splits, pseudonymous ids only, splits and labels.",
            )
        ],
        tags={"phi": "false"},
        kinds=format_kinds(spec.modalities),
        owners=spec_owners(spec.owner),
    )
    def _curated(
        context: dg.AssetExecutionContext, object_store: ObjectStoreResource, catalog: CatalogResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        from clinical_pipelines.curate.build import NothingToBuild, build_version

        try:
            result = build_version(object_store.get_store(), spec, catalog=catalog.get_catalog(),
                                   principal=f"pipeline:{context.run.job_name}", run_id=context.run_id)  # fmt: skip
        except NothingToBuild as exc:
            # Nothing matches yet (e.g. a spec needing tables while landing holds only DICOM): no new
            # version, nothing for the shards to read; the check says so, and the run succeeds.
            context.log.info(f"{exc}: no matching objects, no version built")
            yield dg.AssetCheckResult(
                check_name=QUALITY_CHECK,
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"skipped: no matching objects for spec {spec.name} (no new version)",
                metadata={"skipped": dg.MetadataValue.text(NO_MATCHING_OBJECTS)},
            )
            return
        verb = "built new" if result.created else "unchanged:"
        context.log.info(f"{spec.name}: {verb} version {result.number} ({result.version_id[:12]})")
        yield dg.MaterializeResult(data_version=dg.DataVersion(result.version_id), metadata=_metadata(result, catalog))
        failed = [q for q in result.quality if not q.passed]
        yield dg.AssetCheckResult(
            check_name=QUALITY_CHECK,
            passed=not any(q.severity == "error" for q in failed),
            severity=dg.AssetCheckSeverity.ERROR,
            description="all checks passed" if not failed else "failed: " + ", ".join(q.name for q in failed),
            metadata={
                q.name: dg.MetadataValue.json({"passed": q.passed, "severity": q.severity, **q.detail})
                for q in result.quality
            },
        )

    _curated.__name__ = f"curated_{spec.name}"
    return _curated


def curated_assets(specs: list[DatasetSpec]) -> list[dg.AssetsDefinition]:
    """One asset per dataset spec."""
    return [_build(spec) for spec in specs]
