"""Governance: the scheduled access review and the signed audit export."""

import dagster as dg

from clinical_pipelines.defs.governance.assets import (
    access_review,
    access_review_job,
    access_review_schedule,
    audit_export,
    audit_export_job,
    audit_export_schedule,
)

defs = dg.Definitions(
    assets=[access_review, audit_export],
    jobs=[access_review_job, audit_export_job],
    schedules=[access_review_schedule, audit_export_schedule],
)
