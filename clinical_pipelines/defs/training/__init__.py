"""Stage 5: curated → training-ready. One shard-building asset per curated dataset."""

import dagster as dg

from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.defs.training.assets import training_assets


def defs_for(specs: list[DatasetSpec]) -> dg.Definitions:
    """The training-ready asset of every curated dataset spec."""
    return dg.Definitions(assets=training_assets(specs))
