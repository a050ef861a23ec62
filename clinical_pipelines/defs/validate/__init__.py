"""Stage 2: raw → validated. Per-modality assets with blocking Great Expectations checks."""

import dagster as dg

from clinical_pipelines.defs.validate.assets import validated_assets

defs = dg.Definitions(assets=validated_assets)
