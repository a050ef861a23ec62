"""Promotion gate for stages after validation.

A blocking check stops downstream steps in the *same* run. A later run (a
manual re-materialization, a backfill) must also refuse a partition whose
latest suite result failed: downstream assets call :func:`require_validation_passed`.
"""

import dagster as dg

from clinical_pipelines.defs.validate.assets import suite_check_name, validated_key


class ValidationGateClosed(Exception):
    """The partition's latest validation check failed, or never ran."""


def validation_passed(instance: dg.DagsterInstance, modality: str, partition_key: str) -> bool:
    """True if the suite evaluated with the latest ``validated/<modality>`` materialization of the partition passed.

    (Dagster 1.13 does not record the partition on check executions, so the
    check is found through the run that made the latest materialization.)
    """
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=validated_key(modality), asset_partitions=[partition_key]), limit=1
    ).records
    if not records:
        return False
    check_name = suite_check_name(modality)
    for entry in instance.all_logs(records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if getattr(evaluation, "check_name", None) == check_name and evaluation.asset_key == validated_key(modality):
            return bool(evaluation.passed)
    return False


def require_validation_passed(context: dg.AssetExecutionContext, modality: str) -> None:
    """Raise :class:`ValidationGateClosed` unless the partition passed validation."""
    if not validation_passed(context.instance, modality, context.partition_key):
        raise ValidationGateClosed(
            f"drop {context.partition_key} has not passed {modality} validation; it will not be promoted"
        )
