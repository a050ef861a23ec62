"""Governance jobs: the daily access review (catalog.access) and the signed audit export (catalog.audit_export)."""

import dagster as dg

from clinical_pipelines.defs.catalog_info import STAGE_OWNERS
from clinical_pipelines.defs.resources import CatalogResource, KeyRingResource, ObjectStoreResource


class AccessReviewConfig(dg.Config):
    """How long a grant may go unused before the review revokes it."""

    unused_days: float = 90.0


def _table(rows: list[tuple[str, ...]]) -> str:
    head = "| principal | action | project | tag | last activity | outcome |\n|---|---|---|---|---|---|\n"
    return head + "".join("| " + " | ".join(r) + " |\n" for r in rows) if rows else "nothing to revoke"


@dg.asset(
    key=["governance", "access_review"],
    group_name="governance",
    owners=STAGE_OWNERS,
    kinds={"sql"},  # the grants live in the catalog database
    tags={"phi": "false"},
    description="Revokes grants unused for `unused_days` (default 90) and every grant on a closed project; the "
    "last administrator grant is kept and flagged. Each revocation is an audit record.",
)
def access_review(config: AccessReviewConfig, catalog: CatalogResource) -> dg.MaterializeResult:
    """Run the review once; metadata lists what was revoked (and the kept administrator, if any)."""
    from clinical_pipelines.catalog.access import Access

    result = Access(catalog.get_catalog().engine).review(unused_days=config.unused_days)
    rows = [
        (r.grant.principal, r.grant.action, r.grant.project, r.grant.tag,
         r.grant.last_activity.isoformat(timespec="seconds") + "Z", f"kept ({r.reason})" if r.kept else r.reason)
        for r in result
    ]  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "revoked": sum(not r.kept for r in result),
            "kept": sum(r.kept for r in result),
            "unused_days": config.unused_days,
            "grants": dg.MetadataValue.md(_table(rows)),
        }
    )


access_review_job = dg.define_asset_job(
    name="access_review", selection=[access_review], description="The access review (revokes stale grants)."
)

access_review_schedule = dg.ScheduleDefinition(
    name="access_review_daily",
    job=access_review_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00: revoke grants unused for 90 days and grants on closed projects.",
)


@dg.asset(
    key=["governance", "audit_export"],
    group_name="governance",
    owners=STAGE_OWNERS,
    kinds={"fhir", "ndjson"},
    tags={"phi": "false"},
    description="Exports the audit records after the last export as FHIR R4 AuditEvent NDJSON into archive/audit/, "
    "each file with an Ed25519-signed head, so an auditor can check it without database access.",
)
def audit_export(catalog: CatalogResource, object_store: ObjectStoreResource,
                 keyring: KeyRingResource) -> dg.MaterializeResult:  # fmt: skip
    """Run one export; metadata: the head files written, records exported and the signed chain head."""
    from clinical_pipelines.catalog.audit_export import export_audit, signing_key_id

    key = keyring.get_audit_signing_key()
    report = export_audit(catalog.get_catalog().engine, object_store.get_store(), key)
    return dg.MaterializeResult(
        metadata={
            "records": report.records,
            "head": f"{report.head_seq}:{report.head_hash}",
            "heads_written": dg.MetadataValue.json(report.heads),
            "signing_key_id": signing_key_id(key.public_key()),
        }
    )


audit_export_job = dg.define_asset_job(
    name="audit_export", selection=[audit_export], description="Signed FHIR AuditEvent export of the audit log."
)

audit_export_schedule = dg.ScheduleDefinition(
    name="audit_export_daily",
    job=audit_export_job,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 (after the access review): export the new audit records, signed.",
)
