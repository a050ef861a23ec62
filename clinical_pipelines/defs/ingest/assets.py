"""Landing (external) and raw-zone assets, partitioned by drop."""

from collections.abc import Iterator

import dagster as dg

from clinical_pipelines.defs.catalog_info import STAGE_OWNERS, format_kinds
from clinical_pipelines.defs.ingest.metadata import raw_metadata
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import (
    KeyRingResource,
    LandingSettingsResource,
    LimitsResource,
    ObjectStoreResource,
)
from clinical_pipelines.landing.discovery import parse_partition_key
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.raw.ingest import DropIngestor, IngestReport

LANDING_DROPS = dg.AssetKey(["landing", "drops"])

landing_drops = dg.AssetSpec(
    key=LANDING_DROPS,
    group_name="landing",
    kinds=format_kinds(DROP_MODALITIES),
    owners=STAGE_OWNERS,
    description=(
        "Drops from source systems: landing/<source>/<drop_id>/ with a drop.json listing each file's path, "
        "size and sha256. Written by sources, never by hand; the landing_sensor picks up complete drops."
    ),
)


def raw_key(modality: str) -> dg.AssetKey:
    """Asset key of the raw zone for one modality."""
    return dg.AssetKey(["raw", modality])


@dg.multi_asset(
    name="ingest_drop",
    specs=[
        dg.AssetSpec(
            key=raw_key(modality),
            deps=[LANDING_DROPS],
            group_name="raw",
            description=f"Accepted {modality} files of a drop: verified against drop.json, content-addressed "
            "by sha256, write-once and AES-256-GCM envelope-encrypted in raw/. Rejected items go to quarantine/.",
            kinds=format_kinds([modality]),
            owners=STAGE_OWNERS,
            tags={"phi": "true"},
            skippable=True,  # a drop without this modality skips its validated/de-identified steps
        )
        for modality in DROP_MODALITIES
    ],
    partitions_def=drops_partitions,
    can_subset=False,
)
def ingest_drop(
    context: dg.AssetExecutionContext,
    object_store: ObjectStoreResource,
    keyring: KeyRingResource,
    landing: LandingSettingsResource,
    limits: LimitsResource,
) -> Iterator[dg.MaterializeResult]:
    """Verify, encrypt and store one drop; quarantine what fails and count it."""
    source, drop_id = parse_partition_key(context.partition_key)
    ingestor = DropIngestor(
        object_store.get_store(),
        keyring.get_keyring(),
        workers=landing.ingest_workers,
        limits=limits.limits(),
        max_files=limits.max_drop_files,
    )
    report = ingestor.ingest(source, drop_id)
    context.log.info(
        f"drop {context.partition_key}: {len(report.files)} file(s), {report.bytes_accepted} bytes accepted "
        f"({report.new_objects} new, {report.deduplicated} already stored) at {report.throughput_mb_s()} MB/s"
    )
    if report.quarantined:
        context.log.warning(
            f"drop {context.partition_key}: {len(report.quarantined)} item(s) quarantined "
            f"{report.quarantined_by_reason()}"
        )
    from clinical_pipelines.landing.sources import SHIPPED_SOURCES, classify_drop, load_sources, write_classification

    sources = load_sources(landing.sources_file or SHIPPED_SOURCES)
    present = sorted({f.modality for f in report.files})
    kept = write_classification(object_store.get_store(), classify_drop(source, drop_id, present, sources))
    for modality in modalities_to_materialize(report):
        metadata = {**raw_metadata(report, modality), "policy_tags": dg.MetadataValue.json(list(kept.tags))}
        yield dg.MaterializeResult(asset_key=raw_key(modality), metadata=metadata)


def modalities_to_materialize(report: IngestReport) -> list[str]:
    """The modalities of the drop's accepted files; all of them when it has none (a drop whose every file
    was quarantined is still recorded, and its later stages pass with nothing to do).

    A modality the drop lacks is not materialized, so Dagster skips its validated and de-identified steps
    in this run instead of running them on nothing (each step costs a few event-log writes).
    """
    present = {f.modality for f in report.files}
    return [m for m in DROP_MODALITIES if m in present] or list(DROP_MODALITIES)
