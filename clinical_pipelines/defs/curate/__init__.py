"""Stage 4: de-identified → curated. One asset per dataset spec, a quality check, the curate job."""

from pathlib import Path

import dagster as dg

from clinical_pipelines.defs.curate.assets import curated_assets
from clinical_pipelines.defs.curate.jobs import curate_job, datasets_automation


def defs_for(specs_dir: Path) -> dg.Definitions:
    """The curated assets of every spec in ``specs_dir``, the job that builds them (and their shards) and
    the automation sensor that runs it."""
    return dg.Definitions(assets=curated_assets(specs_dir), jobs=[curate_job], sensors=[datasets_automation])
