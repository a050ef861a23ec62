"""Validated assets per modality, each with its Great Expectations suite as a blocking asset check."""

from collections.abc import Callable, Iterator

import dagster as dg

from clinical_pipelines.defs.catalog_info import STAGE_OWNERS, VALIDATED_FORMATS, format_kinds
from clinical_pipelines.defs.ingest.assets import raw_key
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import (
    KeyRingResource,
    LimitsResource,
    ObjectStoreResource,
    ValidationSettingsResource,
)
from clinical_pipelines.defs.validate.metadata import check_description, check_metadata, validated_metadata
from clinical_pipelines.landing.discovery import parse_partition_key
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.validate.engine import DropValidator

SUITE_DESCRIPTIONS = {
    "dicom": "required attributes, allowed modalities, geometry, no future study dates, unique SOP Instance UIDs",
    "notes": "UTF-8, not binary, length bounds, no stray control characters",
    "tabular": "declared schema (labs/outcomes): typed required columns, value ranges, no future dates, unique keys",
}


def validated_key(modality: str) -> dg.AssetKey:
    """Asset key of the validated stage for one modality."""
    return dg.AssetKey(["validated", modality])


def suite_check_name(modality: str) -> str:
    """Name of the blocking check that runs a modality's suite."""
    return f"{modality}_suite"


def _build(modality: str) -> Callable[..., Iterator[dg.MaterializeResult | dg.AssetCheckResult]]:
    key = validated_key(modality)

    @dg.asset(
        key=key,
        deps=[raw_key(modality)],
        partitions_def=drops_partitions,
        group_name="validated",
        description=f"{modality.capitalize()} items of a drop that parsed and passed their Great Expectations "
        f"suite ({SUITE_DESCRIPTIONS[modality]}). Failing items go to quarantine; a critical failure stops the drop.",
        check_specs=[
            dg.AssetCheckSpec(
                name=suite_check_name(modality),
                asset=key,
                blocking=True,
                description=f"Great Expectations suite: {SUITE_DESCRIPTIONS[modality]}. Blocks promotion on failure.",
            )
        ],
        tags={"phi": "true"},
        kinds=format_kinds([modality], VALIDATED_FORMATS),
        owners=STAGE_OWNERS,
    )
    def _validated(
        context: dg.AssetExecutionContext,
        object_store: ObjectStoreResource,
        keyring: KeyRingResource,
        validation: ValidationSettingsResource,
        limits: LimitsResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        source, drop_id = parse_partition_key(context.partition_key)
        validator = DropValidator(
            object_store.get_store(),
            keyring.get_keyring(),
            max_item_failure_fraction=validation.max_item_failure_fraction,
            limits=limits.limits(),
        )
        report = validator.validate(source, drop_id, modality)
        if report.quarantined:
            context.log.warning(
                f"{modality}: {len(report.quarantined)} item(s) quarantined {report.quarantined_by_reason()}"
            )
        if not report.passed:
            context.log.error(f"{modality}: drop stopped at validation ({', '.join(report.critical_failures)})")
        yield dg.MaterializeResult(metadata=validated_metadata(report))
        yield dg.AssetCheckResult(
            check_name=suite_check_name(modality),
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=check_description(report),
            metadata=check_metadata(report),
        )

    _validated.__name__ = f"validated_{modality}"
    return _validated


validated_assets = [_build(modality) for modality in DROP_MODALITIES]
