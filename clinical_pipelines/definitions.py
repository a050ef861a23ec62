"""All Dagster definitions in one place: every stage's defs plus resources for the chosen environment.

``dagster dev -w workspace.yaml`` loads ``defs`` from here. The environment
(``CLINICAL_PIPELINES_ENV``, local by default) picks the resource values; see
:mod:`clinical_pipelines.settings`.
"""

from __future__ import annotations

import dagster as dg

from clinical_pipelines.curate.spec import load_specs
from clinical_pipelines.defs import curate, deid, governance, ingest, training, validate
from clinical_pipelines.defs.executor import step_executor
from clinical_pipelines.defs.resources import resources_for
from clinical_pipelines.defs.skipped_modalities import quiet_skipped_check_warnings
from clinical_pipelines.landing.sources import load_sources
from clinical_pipelines.settings import Settings

STAGES = [ingest.defs, validate.defs, deid.defs, governance.defs]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Every stage's definitions, bound to resources built from ``settings`` (default: the environment)."""
    settings = settings or Settings.from_env()
    quiet_skipped_check_warnings()
    specs = load_specs(settings.specs_dir)  # parsed once; a bad spec fails loading with its file and line
    load_sources(settings.sources_file)  # likewise a bad sources file
    curated = curate.defs_for(specs)  # one asset per dataset spec in the configured folder
    ready = training.defs_for(specs)  # training-ready shards of each curated dataset
    return dg.Definitions.merge(
        *STAGES, curated, ready, dg.Definitions(resources=resources_for(settings), executor=step_executor)
    )


defs = build_definitions()
