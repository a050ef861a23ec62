"""Jobs the landing sensor launches."""

import dagster as dg

from clinical_pipelines.defs.resources import KeyRingResource, ObjectStoreResource
from clinical_pipelines.landing.reject import find_rejection, quarantine_landing_folder
from clinical_pipelines.storage.names import load_name_key

# Every drop-partitioned stage built so far, landing to the last per-drop asset.
DROP_STAGES = dg.AssetSelection.groups("raw", "validated", "deidentified")

process_drop_job = dg.define_asset_job(
    name="process_drop",
    selection=DROP_STAGES,
    description="Takes one landing drop through every per-drop stage: ingest → raw → validated → de-identified.",
)


class RejectConfig(dg.Config):
    """Landing folders to quarantine, by the keyed id of their prefix (their names may be unsafe)."""

    folder_ids: list[str]
    reason: str


@dg.op
def reject_landing_folders(
    context: dg.OpExecutionContext, config: RejectConfig, object_store: ObjectStoreResource, keyring: KeyRingResource
) -> None:
    """Move each named landing folder into quarantine/_invalid/, keeping every byte (encrypted)."""
    store = object_store.get_store()
    names = load_name_key(store, keyring.get_keyring())
    for prefix_hash in config.folder_ids:
        rejection = find_rejection(store, names, prefix_hash, config.reason)
        if rejection is None:
            context.log.info(f"landing folder {prefix_hash} is already gone; nothing to do")
            continue
        records = quarantine_landing_folder(store, keyring.get_keyring(), rejection, names)
        context.log.warning(f"landing folder {prefix_hash}: {len(records)} object(s) quarantined ({config.reason})")
        context.log_event(
            dg.AssetObservation(
                asset_key=["landing", "drops"],
                metadata={
                    "rejected_folder_id": prefix_hash,
                    "reason": config.reason,
                    "quarantined_objects": len(records),
                },
            )
        )


@dg.job(description="Quarantines landing folders that cannot become drop partitions (unsafe names, stale).")
def reject_landing_job() -> None:
    reject_landing_folders()
