"""The landing sensor: complete drops become dynamic partitions and runs."""

import json
import time

import dagster as dg

from clinical_pipelines.defs.ingest.jobs import process_drop_job, reject_landing_job
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import LandingSettingsResource, ObjectStoreResource
from clinical_pipelines.landing.discovery import Discovery, discover_drops, partition_key

# SQLite instance storage struggles with very large dynamic-partition requests
# (dagster#16260): register at most this many drops per tick; the rest follow.
MAX_DROPS_PER_TICK = 500


def landing_tick(
    store_resource: ObjectStoreResource,
    settings: LandingSettingsResource,
    known: set[str],
    cursor: str | None,
    now: float,
) -> tuple[Discovery, dg.SensorResult]:
    """One evaluation of the landing sensor: the discovery engine turned into partitions, runs and a cursor."""
    state = json.loads(cursor) if cursor else {}
    stale_after_s = settings.stale_after_hours * 3600 if settings.stale_after_hours > 0 else None
    found = discover_drops(
        store_resource.get_store(),
        known=known,
        first_seen=state.get("first_seen", {}),
        now=now,
        stale_after_s=stale_after_s,
    )
    new_keys = [partition_key(s, d) for s, d in found.complete[:MAX_DROPS_PER_TICK]]
    run_requests = [
        dg.RunRequest(run_key=f"drop:{key}", partition_key=key, job_name=process_drop_job.name) for key in new_keys
    ]
    for reason in sorted({r.reason for r in found.rejections}):
        hashes = sorted(r.prefix_hash for r in found.rejections if r.reason == reason)
        run_requests.append(
            dg.RunRequest(
                run_key=f"reject:{reason}:{','.join(hashes)}",
                job_name=reject_landing_job.name,
                run_config={"ops": {"reject_landing_folders": {"config": {"prefix_sha256": hashes, "reason": reason}}}},
                tags={"clinical_pipelines/rejected_folders": str(len(hashes))},
            )
        )
    result = dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[drops_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"first_seen": found.first_seen}, sort_keys=True),
    )
    return found, result


@dg.sensor(
    name="landing_sensor",
    jobs=[process_drop_job, reject_landing_job],
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns each complete landing drop (drop.json present) into a drop partition and a process_drop run; "
    "quarantines folders with unsafe names and drops that stay incomplete past the stale timeout.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, object_store: ObjectStoreResource, landing: LandingSettingsResource
) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(drops_partitions.name))
    found, result = landing_tick(object_store, landing, known, context.cursor, time.time())
    if found.complete or found.rejections:
        context.log.info(
            f"{len(found.complete)} new complete drop(s), {len(found.rejections)} folder(s) to quarantine; "
            f"{found.folders_listed} folders listed, {found.heads} drop.json lookups"
        )
    return result
