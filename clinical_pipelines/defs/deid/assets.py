"""De-identified assets per modality, each with a blocking residual-PHI scan."""

from collections.abc import Callable, Iterator

import dagster as dg

from clinical_pipelines.defs.catalog_info import STAGE_OWNERS, format_kinds
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import DeidSecretResource, KeyRingResource, LimitsResource, ObjectStoreResource
from clinical_pipelines.defs.validate.assets import validated_key
from clinical_pipelines.defs.validate.gate import require_validation_passed
from clinical_pipelines.landing.discovery import parse_partition_key
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.version import code_version
from clinical_pipelines.zones import deid_record_key

RESIDUAL_CHECK = "residual_phi_scan"


def deidentified_key(modality: str) -> dg.AssetKey:
    """Asset key of the de-identified stage for one modality."""
    return dg.AssetKey(["deidentified", modality])


def _build(modality: str) -> Callable[..., Iterator[dg.MaterializeResult | dg.AssetCheckResult]]:
    key = deidentified_key(modality)

    @dg.asset(
        key=key,
        deps=[validated_key(modality)],
        partitions_def=drops_partitions,
        group_name="deidentified",
        description=f"De-identified {modality} of a drop (PS3.15 Basic Profile for DICOM; Presidio with clinical "
        "recognizers for notes; keyed pseudonyms, per-patient date shifts and Safe Harbor generalisation for "
        "tables), content-addressed in curated/.",
        check_specs=[
            dg.AssetCheckSpec(
                name=RESIDUAL_CHECK,
                asset=key,
                blocking=True,
                description="Searches every de-identified output for the identifiers of its original; any hit "
                "stops promotion of the drop.",
            )
        ],
        tags={"phi": "false"},
        kinds=format_kinds([modality]),
        owners=STAGE_OWNERS,
    )
    def _deidentified(
        context: dg.AssetExecutionContext,
        object_store: ObjectStoreResource,
        keyring: KeyRingResource,
        deid_secret: DeidSecretResource,
        limits: LimitsResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        from clinical_pipelines.deid.stage import DropDeidentifier

        require_validation_passed(context, modality)
        source, drop_id = parse_partition_key(context.partition_key)
        pseudonymizer, dicom_engine, notes_engine = deid_secret.engines()  # warm across drops in this process
        engine = DropDeidentifier(
            object_store.get_store(),
            keyring.get_keyring(),
            pseudonymizer,
            dicom_engine,
            notes_engine,  # de-identifies notes; re-reads every modality's text output
            limits=limits.limits(),
            workers=deid_secret.workers,
        )
        report = engine.deidentify(source, drop_id, modality)
        if report.quarantined:
            context.log.warning(
                f"{modality}: {len(report.quarantined)} item(s) quarantined {report.quarantined_by_reason()}"
            )
        yield dg.MaterializeResult(
            metadata={
                "drop_id": dg.MetadataValue.text(drop_id),
                "source": dg.MetadataValue.text(source),
                "objects": dg.MetadataValue.int(len(report.items)),
                "bytes_out": dg.MetadataValue.int(sum(i.size for i in report.items)),
                "patients": dg.MetadataValue.int(report.patients),
                "quarantined_by_reason": dg.MetadataValue.json(report.quarantined_by_reason()),
                "deid_profile": dg.MetadataValue.text(report.profile),
                "deid_record": dg.MetadataValue.path(deid_record_key(modality, source, drop_id)),
                "items_per_s": dg.MetadataValue.float(
                    round((len(report.items) + len(report.quarantined)) / report.seconds, 1) if report.seconds else 0.0
                ),
                "code_version": dg.MetadataValue.text(code_version()),
            }
        )
        yield dg.AssetCheckResult(
            check_name=RESIDUAL_CHECK,
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description="no identifier of any original found in the output"
            if report.passed
            else f"identifiers found in {report.items_with_residual} output(s): drop stopped",
            metadata={
                "identifiers_searched": dg.MetadataValue.int(report.identifiers_searched),
                "items_with_residual": dg.MetadataValue.int(report.items_with_residual),
                "hits_by_kind": dg.MetadataValue.json(report.residual_hits),  # attribute/column names and counts
            },
        )

    _deidentified.__name__ = f"deidentified_{modality}"
    return _deidentified


deidentified_assets = [_build(modality) for modality in DROP_MODALITIES]
