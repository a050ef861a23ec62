"""Running the curate job (curated versions, then their training shards) without the UI, as
``clinical-pipelines run`` does, and its outcome per dataset."""

from dataclasses import dataclass

import dagster as dg

from clinical_pipelines.defs.curate.jobs import CURATED_GROUP, TRAINING_GROUP, curate_job

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class CuratedOutcome:
    """One curated dataset after the curate run: its version (None when nothing matched) and figures."""

    dataset: str
    version: int | None = None
    version_id: str | None = None
    new_version: bool = False
    objects: int = 0
    bytes: int = 0
    patients: int = 0
    manifest: str | None = None
    quality_failed: tuple[str, ...] = ()
    shards: int = 0  # training-ready shards of the version
    samples_per_split: dict[str, int] | None = None
    index: str | None = None
    skipped: str | None = None  # why no version was built this run ("no matching objects")


@dataclass
class CurateRun:
    """The curate run: its id, success, and one outcome per dataset."""

    run_id: str | None
    success: bool
    datasets: list[CuratedOutcome]
    error: str | None = None


def run_curate(defs: dg.Definitions, instance: dg.DagsterInstance, *, tags: dict[str, str] | None = None) -> CurateRun:
    """Materialize every curated asset in this process; datasets that selected nothing have no version."""
    job = defs.resolve_job_def(curate_job.name)
    keys = job.asset_layer.executable_asset_keys if job.asset_layer else set()
    names = sorted(k.path[-1] for k in keys if k.path[0] == CURATED_GROUP)
    if not names:
        return CurateRun(None, True, [])
    result = job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False, tags=tags)
    outcomes = {name: CuratedOutcome(name) for name in names}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        outcome = outcomes[mat.asset_key.path[-1]]
        if mat.asset_key.path[0] == TRAINING_GROUP:
            outcome.shards, outcome.index = int(meta["shards"]), str(meta["index"])  # type: ignore[arg-type]
            outcome.samples_per_split = dict(meta["samples_per_split"])  # type: ignore[arg-type]
            continue
        outcome.version, outcome.version_id = int(meta["version"]), str(meta["version_id"])  # type: ignore[arg-type]
        outcome.new_version = bool(meta["new_version"])
        outcome.objects, outcome.bytes = int(meta["object_count"]), int(meta["bytes"])  # type: ignore[arg-type]
        outcome.patients, outcome.manifest = int(meta["patients"]), str(meta["manifest"])  # type: ignore[arg-type]
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.asset_key.path[0] != CURATED_GROUP:
            continue
        if not evaluation.passed:
            outcomes[evaluation.asset_key.path[-1]].quality_failed += (evaluation.check_name,)
        skipped = evaluation.metadata.get("skipped")
        if skipped is not None:
            outcomes[evaluation.asset_key.path[-1]].skipped = str(skipped.value)
    failures = [e for e in result.all_events if e.is_step_failure]
    error = failures[0].message if failures else None
    return CurateRun(result.run_id, result.success, [outcomes[n] for n in names], error)
