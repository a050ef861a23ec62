"""The job that builds every curated dataset's version (also triggered by automation after de-identification)."""

import dagster as dg

CURATED_GROUP = "curated"

curate_job = dg.define_asset_job(
    name="curate",
    selection=dg.AssetSelection.groups(CURATED_GROUP),
    description="Builds a new version of every curated dataset whose de-identified inputs or spec changed.",
)
