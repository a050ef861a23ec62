"""Process whatever complete drops sit in landing, through every stage, without the UI or daemon:
``process_drop`` per drop, then the ``datasets`` job (curated versions and their shards).

The same definitions, jobs and Dagster instance as the UI: runs show up there
afterwards when ``DAGSTER_HOME`` points at the same instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.defs.datasets import CURATED_GROUP, TRAINING_GROUP, datasets_job
from clinical_pipelines.defs.ingest.assets import raw_key
from clinical_pipelines.defs.ingest.jobs import process_drop_job, reject_landing_job
from clinical_pipelines.defs.partitions import drops_partitions
from clinical_pipelines.defs.resources import resources_for
from clinical_pipelines.defs.run_config import QUIET, reject_run_config
from clinical_pipelines.landing.discovery import discover_drops, parse_partition_key, partition_key
from clinical_pipelines.landing.expected import declared_modalities
from clinical_pipelines.modalities import DROP_MODALITIES
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.runlock import is_alive, process_identity
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import ObjectStore

PARTITION_BATCH = 500
# Every run this module starts carries these tags: who started it (to tell a killed run from a live
# one) and, once a later run found it dead, that it was interrupted. Embedded runs have no daemon to
# monitor them, so a `kill -9` leaves them STARTED for ever unless the next `run` closes them.
LAUNCHED_BY_TAG = "clinical_pipelines/launched_by"
OWNER_TAG = "clinical_pipelines/owner"
INTERRUPTED_TAG = "clinical_pipelines/interrupted"
PARTITION_TAG = "dagster/partition"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def run_tags() -> dict[str, str]:
    """Tags of a run started by this process."""
    return {LAUNCHED_BY_TAG: "clinical-pipelines run", OWNER_TAG: process_identity()}


def close_interrupted_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark failed every run a killed ``clinical-pipelines run`` left unfinished; returns those runs.

    Only runs this module started, whose process is gone (on this host), are touched: runs of a
    live process, of the daemon or of another host are left alone.
    """
    closed = []
    records = instance.get_run_records(
        dg.RunsFilter(statuses=UNFINISHED, tags={LAUNCHED_BY_TAG: "clinical-pipelines run"})
    )
    for record in records:
        run = record.dagster_run
        if is_alive(run.tags.get(OWNER_TAG, "")) is not False:
            continue
        instance.add_run_tags(run.run_id, {INTERRUPTED_TAG: "true"})
        instance.report_run_failed(
            run,
            message="interrupted: the clinical-pipelines run process running it ended before the run did "
            "(killed or crashed); the next run takes its drop again",
        )
        closed.append(run)
    return closed


def interrupted_drops(instance: dg.DagsterInstance) -> list[str]:
    """Drops whose latest ``process_drop`` run was interrupted: their later stages may never have run."""
    keys = {
        r.dagster_run.tags[PARTITION_TAG]
        for r in instance.get_run_records(dg.RunsFilter(job_name=process_drop_job.name, tags={INTERRUPTED_TAG: "true"}))
        if PARTITION_TAG in r.dagster_run.tags
    }
    pending = []
    for key in sorted(keys):
        latest = instance.get_run_records(
            dg.RunsFilter(job_name=process_drop_job.name, tags={PARTITION_TAG: key}), limit=1
        )
        if latest and latest[0].dagster_run.tags.get(INTERRUPTED_TAG) == "true":
            pending.append(key)
    return pending


def _add_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Register ``keys`` as drop partitions, in batches; a key another process added meanwhile is fine."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(3):
        registered = set(instance.get_dynamic_partitions(drops_partitions.name))
        to_add = [k for k in keys if k not in registered]
        try:
            for i in range(0, len(to_add), PARTITION_BATCH):
                instance.add_dynamic_partitions(drops_partitions.name, to_add[i : i + PARTITION_BATCH])
            return
        except IntegrityError:  # the sensor (or another instance user) added one of them first: look again
            if attempt == 2:
                raise


@dataclass
class DropOutcome:
    """One drop's run: partition key, run id, success, raw-zone counts and check outcomes (from the run's events)."""

    partition_key: str
    run_id: str
    success: bool
    files: int = 0
    bytes: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    validation_quarantined: dict[str, int] = field(default_factory=dict)
    checks_passed: list[str] = field(default_factory=list)
    checks_failed: list[str] = field(default_factory=list)
    stopped_by_checks: bool = False  # the run failed only because a blocking check failed: expected, visible
    error: str | None = None
    resent: bool = False  # a known drop id whose drop.json changed: its new content goes to drop_conflict

    @property
    def promoted(self) -> bool:
        """The run succeeded and no blocking check stopped the drop."""
        return self.success and not self.checks_failed


@dataclass
class CuratedOutcome:
    """One curated dataset after the datasets run: its version (None when nothing matched) and figures."""

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
    """The datasets run: its id, success, and one outcome per dataset."""

    run_id: str | None
    success: bool
    datasets: list[CuratedOutcome]
    error: str | None = None


@dataclass
class HeadlessSummary:
    """What :func:`process_landing` did."""

    drops: list[DropOutcome] = field(default_factory=list)
    rejected_folders: int = 0
    interrupted_runs: int = 0  # runs a killed earlier `run` left unfinished, closed as failed by this one
    seconds: float = 0.0
    curated: CurateRun | None = None  # the curated versions built after the drops

    @property
    def failed(self) -> list[DropOutcome]:
        """Drops whose run failed for a reason other than a failed quality gate."""
        return [d for d in self.drops if not d.success and not d.stopped_by_checks]


def _outcome(key: str, result: dg.ExecuteInProcessResult) -> DropOutcome:
    outcome = DropOutcome(partition_key=key, run_id=result.run_id, success=result.success)
    for mat in result.get_asset_materialization_events():
        materialization = mat.step_materialization_data.materialization
        meta = {k: v.value for k, v in materialization.metadata.items()}
        stage = materialization.asset_key.path[0]
        if stage == "raw":
            outcome.files += int(meta.get("file_count", 0))  # type: ignore[arg-type]
            outcome.bytes += int(meta.get("bytes", 0))  # type: ignore[arg-type]
            outcome.quarantined = int(meta.get("quarantined_count", 0))  # type: ignore[arg-type]
            outcome.quarantined_by_reason = dict(meta.get("quarantined_by_reason") or {})  # type: ignore[arg-type]
        elif stage == "validated":
            for reason, count in dict(meta.get("quarantined_by_reason") or {}).items():  # type: ignore[arg-type]
                outcome.validation_quarantined[reason] = outcome.validation_quarantined.get(reason, 0) + count
    for evaluation in result.get_asset_check_evaluations():
        (outcome.checks_passed if evaluation.passed else outcome.checks_failed).append(evaluation.check_name)
    if not result.success:
        step_errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
        outcome.stopped_by_checks = bool(outcome.checks_failed) and all(
            err is not None and err.cls_name == "DagsterAssetCheckFailedError" for err in step_errors
        )
        failures = [e for e in result.all_events if e.is_failure]
        outcome.error = failures[0].message if failures else "run failed"
    return outcome


def run_curate(defs: dg.Definitions, instance: dg.DagsterInstance, *, tags: dict[str, str] | None = None) -> CurateRun:
    """Run the ``datasets`` job in this process (every curated version, then its shards); one outcome per
    dataset, and datasets that selected nothing have no version."""
    job = defs.resolve_job_def(datasets_job.name)
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


def _prewarm(settings: Settings, store: ObjectStore, keys: list[str]) -> list[str]:
    """Start the de-identification worker pools the drops ``keys`` will use, so their engines load on the
    other cores while the first drop is ingested and validated (one core, Great Expectations' import);
    returns the modalities whose pools were started. The pools are the ones the de-identified steps of
    this process use (same secret, engines and size)."""
    if settings.deid_workers <= 1 or not keys:
        return []
    from clinical_pipelines.deid.stage import prewarm_pools

    try:
        expected = declared_modalities(store, [parse_partition_key(k) for k in keys])
        pseudonymizer, dicom, notes = resources_for(settings)["deid_secret"].engines()  # type: ignore[attr-defined]
        return prewarm_pools(pseudonymizer, dicom, notes, settings.deid_workers, dict(expected))
    except Exception:  # only speed is at stake: a missing key or a dead worker shows in the steps, as without it
        return []


def _import_validation_library() -> None:
    """Import Great Expectations (3-4 s of one core) on a thread while the first drop is ingested, instead
    of inside that drop's validation step: ingest spends its time in hashing, encryption and file I/O, which
    release the GIL. The step's own import then finds the module loaded (or waits for it: one import lock)."""
    import contextlib
    import threading

    from clinical_pipelines.validate.expectations import import_gx

    def _import() -> None:
        with contextlib.suppress(Exception):  # the step imports it again and reports what fails there
            import_gx()

    threading.Thread(target=_import, name="import-great-expectations", daemon=True).start()


def process_landing(settings: Settings, instance: dg.DagsterInstance) -> HeadlessSummary:
    """Run ``process_drop`` for every complete drop not yet processed, then the ``datasets`` job.

    A drop counts as processed once its raw stage is materialized, unless the run that did it was
    interrupted (its process killed): runs a killed ``run`` left unfinished are closed as failed
    first, and their drops are taken again (every stage is idempotent). Folders that cannot be
    partitions (unsafe names) are quarantined through ``reject_landing_job``. Runs execute in this
    process, one drop at a time; the caller holds the data folder's run lock (:mod:`runlock`).
    """
    started = time.perf_counter()
    defs = build_definitions(settings)
    summary = HeadlessSummary()
    tags = run_tags()
    summary.interrupted_runs = len(close_interrupted_runs(instance))
    store = settings.open_store()
    raw = RawZone(store, settings.keyring())
    # a drop is ingested once any raw modality is materialized: only the modalities it holds are
    done = {key for modality in DROP_MODALITIES for key in instance.get_materialized_partitions(raw_key(modality))}
    found = discover_drops(store, names=raw.names, known=done, first_seen={}, now=time.time())
    unsafe = sorted(r.prefix_hash for r in found.rejections if r.reason == "unsafe_name")
    if unsafe:
        defs.resolve_job_def(reject_landing_job.name).execute_in_process(
            run_config=reject_run_config(unsafe, "unsafe_name"), instance=instance, tags=tags
        )
        summary.rejected_folders = len(unsafe)
    # Known drops whose drop.json changed since they were ingested: run them again, so the change is
    # quarantined (drop_conflict) and reported, never skipped in silence.
    resent = sorted(k for k in done if raw.landing_changed(*parse_partition_key(k)) is not None)
    keys = list(dict.fromkeys(interrupted_drops(instance) + [partition_key(s, d) for s, d in found.complete] + resent))
    _add_partitions(instance, keys)
    if keys:
        _import_validation_library()
    _prewarm(settings, store, keys)
    job = defs.resolve_job_def(process_drop_job.name)
    for key in keys:
        result = job.execute_in_process(
            run_config=QUIET, instance=instance, partition_key=key, raise_on_error=False, tags=tags
        )
        outcome = _outcome(key, result)
        outcome.resent = key in resent
        summary.drops.append(outcome)
    summary.curated = run_curate(defs, instance, tags=tags)
    sweep = getattr(store, "sweep_temp_files", None)
    if sweep is not None:  # a killed run's temp files too young to tell from a live write when this run began
        sweep()
    summary.seconds = time.perf_counter() - started
    return summary
