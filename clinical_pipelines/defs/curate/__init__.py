"""Stage 4: de-identified → curated. One asset per dataset spec, a quality check, the datasets job."""

import dagster as dg

from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.defs.curate.assets import curated_assets
from clinical_pipelines.defs.datasets import datasets_automation, datasets_job


def defs_for(specs: list[DatasetSpec]) -> dg.Definitions:
    """The curated asset of every dataset spec, the job that builds them (and their shards) and
    the automation sensor that runs it."""
    return dg.Definitions(assets=curated_assets(specs), jobs=[datasets_job], sensors=[datasets_automation])
