"""The landing sensor: complete drops become dynamic partitions and runs."""

import json
import time

import dagster as dg

from clinical_pipelines.defs.ingest.jobs import process_drop_job, reject_landing_job
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import KeyRingResource, LandingSettingsResource, ObjectStoreResource
from clinical_pipelines.defs.run_config import QUIET, reject_run_config
from clinical_pipelines.landing.discovery import Discovery, discover_drops, parse_partition_key, partition_key
from clinical_pipelines.raw.zone import RawZone

# SQLite instance storage struggles with very large dynamic-partition requests
# (dagster#16260): register at most this many drops per tick; the rest follow.
MAX_DROPS_PER_TICK = 500
# Known drops re-checked per tick for a re-sent drop.json (two small reads each), round-robin
# through the cursor, so every drop is looked at again without a tick costing O(all drops).
RECHECK_PER_TICK = 200


def landing_tick(
    store_resource: ObjectStoreResource,
    settings: LandingSettingsResource,
    known: set[str],
    cursor: str | None,
    now: float,
    keyring: KeyRingResource,
) -> tuple[Discovery, dg.SensorResult, list[str]]:
    """One evaluation of the landing sensor: the discovery engine turned into partitions, runs and a cursor.

    Also returns the known drops found re-sent (a changed drop.json): each gets a run, which
    quarantines the new content as ``drop_conflict`` and fails visibly (drops are immutable).
    """
    state = json.loads(cursor) if cursor else {}
    stale_after_s = settings.stale_after_hours * 3600 if settings.stale_after_hours > 0 else None
    store = store_resource.get_store()
    raw = RawZone(store, keyring.get_keyring())
    found = discover_drops(
        store,
        names=raw.names,
        known=known,
        first_seen=state.get("first_seen", {}),
        now=now,
        stale_after_s=stale_after_s,
    )
    new_keys = [partition_key(s, d) for s, d in found.complete[:MAX_DROPS_PER_TICK]]
    run_requests = [
        dg.RunRequest(run_key=f"drop:{key}", partition_key=key, job_name=process_drop_job.name, run_config=QUIET)
        for key in new_keys
    ]
    ordered = sorted(known)
    offset = int(state.get("recheck_offset", 0)) % len(ordered) if ordered else 0
    resent = []
    for key in (ordered[offset:] + ordered[:offset])[:RECHECK_PER_TICK]:
        changed = raw.landing_changed(*parse_partition_key(key))
        if changed is not None:
            resent.append(key)
            run_requests.append(
                dg.RunRequest(
                    run_key=f"drop:{key}:resent:{changed.size}:{changed.last_modified}:{changed.etag}",
                    partition_key=key,
                    job_name=process_drop_job.name,
                    run_config=QUIET,
                    tags={"clinical_pipelines/resent_drop": "true"},
                )
            )
    for reason in sorted({r.reason for r in found.rejections}):
        hashes = sorted(r.prefix_hash for r in found.rejections if r.reason == reason)
        run_requests.append(
            dg.RunRequest(
                run_key=f"reject:{reason}:{','.join(hashes)}",
                job_name=reject_landing_job.name,
                run_config=reject_run_config(hashes, reason),
                tags={"clinical_pipelines/rejected_folders": str(len(hashes))},
            )
        )
    result = dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[drops_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps(
            {"first_seen": found.first_seen, "recheck_offset": offset + RECHECK_PER_TICK if ordered else 0},
            sort_keys=True,
        ),
    )
    return found, result, resent


@dg.sensor(
    name="landing_sensor",
    jobs=[process_drop_job, reject_landing_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns each complete landing drop (drop.json present) into a drop partition and a process_drop run; "
    "quarantines folders with unsafe names and drops that stay incomplete past the stale timeout.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext,
    object_store: ObjectStoreResource,
    landing: LandingSettingsResource,
    keyring: KeyRingResource,
) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(drops_partitions.name))
    found, result, resent = landing_tick(object_store, landing, known, context.cursor, time.time(), keyring)
    for key in resent:
        context.log.warning(
            f"drop {key} was re-sent with a changed drop.json: drops are immutable; its run quarantines the new "
            "content as drop_conflict and fails (send changes as a new drop id)"
        )
    if found.complete or found.rejections:
        context.log.info(
            f"{len(found.complete)} new complete drop(s), {len(found.rejections)} folder(s) to quarantine; "
            f"{found.folders_listed} folders listed, {found.heads} drop.json lookups"
        )
    return result
