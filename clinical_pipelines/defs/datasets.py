"""The ``datasets`` job (curated versions, then their training-ready shards), the automation sensor that
runs it, and the two asset groups it covers."""

import dagster as dg

CURATED_GROUP = "curated"
TRAINING_GROUP = "training"
DATASET_GROUPS = dg.AssetSelection.groups(CURATED_GROUP, TRAINING_GROUP)

datasets_job = dg.define_asset_job(
    name="datasets",
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
