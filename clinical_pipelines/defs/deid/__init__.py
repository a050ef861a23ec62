"""Stage 3: validated → de-identified. Per-modality assets with a blocking residual-PHI scan."""

import dagster as dg

from clinical_pipelines.defs.deid.assets import deidentified_assets

defs = dg.Definitions(assets=deidentified_assets)
