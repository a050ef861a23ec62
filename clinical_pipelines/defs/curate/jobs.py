"""The job that builds curated versions and their training-ready shards, and the automation that runs it."""

import dagster as dg

CURATED_GROUP = "curated"
TRAINING_GROUP = "training"
DATASET_GROUPS = dg.AssetSelection.groups(CURATED_GROUP, TRAINING_GROUP)

curate_job = dg.define_asset_job(
    name="curate",
    selection=DATASET_GROUPS,
    description="Builds a new version of every curated dataset whose de-identified inputs or spec changed, "
    "then the training-ready shards of each new version.",
)

# Explicit, and on from the start: curated versions follow de-identified drops, shards follow versions,
# with nobody launching anything (the assets' automation conditions say when).
datasets_automation = dg.AutomationConditionSensorDefinition(
    "datasets_automation",
    target=DATASET_GROUPS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Builds curated versions after de-identified partitions land, and their shards after that.",
)
