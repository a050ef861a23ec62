"""``clinical-pipelines run``: every complete drop in landing through every stage, headless, then exit."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clinical_pipelines.cli._common import data_dir_option, fail, settings_for, size, store_url_option

if TYPE_CHECKING:
    import dagster as dg

    from clinical_pipelines.headless import CurateRun
    from clinical_pipelines.settings import Settings


def _instance_for(data_dir: Path) -> dg.DagsterInstance:
    """The Dagster instance: ``$DAGSTER_HOME`` if set, else one kept beside the data (``DIR/.dagster``)."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        from clinical_pipelines.local_instance import prepare_home

        os.environ["DAGSTER_HOME"] = str(prepare_home(data_dir / ".dagster"))
    return dg.DagsterInstance.get()


@click.command()
@data_dir_option
@store_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="When another run holds the data folder: wait for it (saying so), or exit at once with status 3.",
)
def run(data_dir: Path | None, store_url: str | None, as_json: bool, wait: bool) -> None:
    """Process every complete drop in landing/ through all stages built so far, then exit.

    One run per data folder at a time (a lock in DIR/.run.lock); a run killed part-way is completed
    by the next one. Exit status: 0 done, 1 a drop or the datasets run failed, 2 configuration error,
    3 another run holds the data folder and --no-wait was given (nothing done).
    """
    from clinical_pipelines.runlock import DataFolderBusy, run_lock

    settings = settings_for(data_dir=data_dir, store_url=store_url)
    try:
        with run_lock(settings.data_dir, wait=wait, on_wait=lambda m: click.echo(f"{m}: waiting for it", err=True)):
            _run_locked(settings, as_json)
    except DataFolderBusy as exc:
        click.echo(f"error: {exc}: nothing done (without --no-wait, run waits for it)", err=True)
        sys.exit(3)


def _run_locked(settings: Settings, as_json: bool) -> None:
    """``run`` with the data folder's lock held."""
    import warnings

    warnings.filterwarnings("ignore", message="Parameter `owners`")  # raised inside Dagster itself
    from clinical_pipelines.deid.secret import load_deid_key
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.storage.names import LegacyLayoutError

    # Keys are checked before any run starts: a bad key is one line and exit 2, not a failed run per drop.
    # (With the lock held: two first runs would otherwise each generate a local key.)
    settings.keyring()
    load_deid_key(settings.key_dir, create=settings.env != "production")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    instance = _instance_for(settings.data_dir)
    try:
        summary = process_landing(settings, instance)
    except LegacyLayoutError as exc:
        fail(str(exc))
    total_files = sum(d.files for d in summary.drops)
    total_bytes = sum(d.bytes for d in summary.drops)
    quarantined = sum(d.quarantined for d in summary.drops)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "drops": [{**d.__dict__, "promoted": d.promoted} for d in summary.drops],
                    "files": total_files,
                    "bytes": total_bytes,
                    "quarantined": quarantined,
                    "rejected_folders": summary.rejected_folders,
                    "interrupted_runs": summary.interrupted_runs,
                    "store": settings.store_url,
                    "dagster_home": os.environ["DAGSTER_HOME"],
                    "seconds": round(summary.seconds, 2),
                    "curated": _curated_json(summary.curated),
                },
                indent=2,
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="clinical-pipelines: drops processed")
        for column in ("drop", "run", "files", "size", "quarantined at ingest", "quality gates"):
            table.add_column(column)
        for d in summary.drops:
            reasons = ", ".join(f"{k}:{v}" for k, v in d.quarantined_by_reason.items())
            extra = ", ".join(f"{k}:{v}" for k, v in d.validation_quarantined.items())
            if d.checks_failed:
                validation = "[red]STOPPED[/red] by " + ", ".join(d.checks_failed)
            else:
                validation = f"passed ({len(d.checks_passed)} checks)"
            validation += f"; quarantined {extra}" if extra else ""
            table.add_row(
                d.partition_key,
                "ok" if d.success else ("stopped" if d.stopped_by_checks else "[red]FAILED[/red]"),
                str(d.files),
                size(d.bytes),
                f"{d.quarantined} {reasons}".strip(),
                validation,
            )
        console = Console()
        if summary.interrupted_runs:
            console.print(
                f"{summary.interrupted_runs} run(s) left unfinished by an earlier, killed run were closed as "
                "failed; their drops were taken again"
            )
        console.print(table)
        console.print(
            f"{len(summary.drops)} drop(s), {total_files} file(s), {size(total_bytes)} accepted, "
            f"{quarantined} item(s) quarantined at ingest, {summary.rejected_folders} unsafe folder(s) rejected, "
            f"{sum(d.promoted for d in summary.drops)} drop(s) passed validation "
            f"in {summary.seconds:.1f} s\n"
            f"raw zone (encrypted):  {settings.store_url}/raw\n"
            f"quarantine:            {settings.store_url}/quarantine\n"
            f"master key folder:     {settings.key_dir}\n"
            f"Dagster instance:      {os.environ['DAGSTER_HOME']}"
        )
        for d in summary.failed:
            if d.resent:
                console.print(
                    f"[red]{d.partition_key} was re-sent with different content:[/red] drops are immutable; the new "
                    "content is quarantined as drop_conflict (send it as a new drop id)"
                )
            console.print(f"[red]{d.partition_key} failed:[/red] {d.error}")
        _print_curated(console, summary.curated)
    sys.exit(1 if summary.failed or (summary.curated and not summary.curated.success) else 0)


def _curated_json(run: CurateRun | None) -> list[dict[str, Any]]:
    """The curated outcomes of a headless run as JSON-ready dicts."""
    return [dict(vars(o), quality_failed=list(o.quality_failed)) for o in run.datasets] if run else []


def _print_curated(console: Any, run: CurateRun | None) -> None:
    """Print the curated versions a headless run built or found (one line each)."""
    if run is None:
        return
    for o in run.datasets:
        if o.version is None:
            console.print(f"curated {o.dataset}: {o.skipped or 'no matching objects'} yet, no version built")
            continue
        state = "new version" if o.new_version else "unchanged"
        console.print(
            f"curated {o.dataset}@{o.version} ({state}) {o.version_id}: {o.objects} objects, {size(o.bytes)}, "
            f"{o.patients} patients; manifest {o.manifest}"
            + (f" [red]quality failed: {', '.join(o.quality_failed)}[/red]" if o.quality_failed else "")
        )
        if o.shards:
            splits = ", ".join(f"{k} {v}" for k, v in sorted((o.samples_per_split or {}).items()))
            console.print(f"  training-ready: {o.shards} shard(s) ({splits} samples); index {o.index}")
    if not run.success:
        console.print(f"[red]datasets run failed:[/red] {run.error}")


COMMANDS = [run]
