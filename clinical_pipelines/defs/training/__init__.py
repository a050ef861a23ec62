"""Stage 5: curated → training-ready. One shard-building asset per curated dataset."""

from pathlib import Path

import dagster as dg

from clinical_pipelines.defs.training.assets import training_assets


def defs_for(specs_dir: Path) -> dg.Definitions:
    """The training-ready asset of every curated dataset spec in ``specs_dir``."""
    return dg.Definitions(assets=training_assets(specs_dir))
