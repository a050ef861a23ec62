"""The ``clinical-pipelines`` command line. Each command imports only what it needs, so it starts fast."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from clinical_pipelines.cli_catalog import register_commands


@click.group()
@click.version_option(package_name="clinical-pipelines")
def main() -> None:
    """Governed, versioned, training-ready clinical datasets."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Data folder whose landing/ receives drops.")
@click.option("--store-url", help="Object store instead of --out (e.g. s3://bucket/prefix).")
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same bytes.")
@click.option("--patients", type=int, default=6, show_default=True)
@click.option("--slices", type=int, default=4, show_default=True, help="DICOM slices per series.")
@click.option("--series", type=int, default=1, show_default=True, help="DICOM series per patient.")
@click.option("--notes", type=int, default=2, show_default=True, help="Clinical notes per patient.")
@click.option("--faults/--no-faults", default=False, help="Also write drops with known faults (truncated, unsafe...).")
@click.option("--canaries", type=click.Path(path_type=Path), help="Where to write planted identifiers (JSON).")
def synth(
    out_dir: Path | None,
    store_url: str | None,
    seed: int,
    patients: int,
    slices: int,
    series: int,
    notes: int,
    faults: bool,
    canaries: Path | None,
) -> None:
    """Write synthetic drops (DICOM, notes, tables) into a landing zone, reproducibly by seed."""
    from clinical_pipelines.landing.samples import write_corpus
    from clinical_pipelines.synth import SynthCorpus

    if not out_dir and not store_url:
        raise click.UsageError("give --out DIR or --store-url URL")
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env(data_dir=out_dir, store_url=store_url)
    corpus = SynthCorpus(
        seed,
        n_patients=patients,
        slices_per_series=slices,
        dicom_series_per_patient=series,
        notes_per_patient=notes,
    )
    written = write_corpus(settings.open_store(), corpus, faults=faults)
    canary_path = canaries or (settings.data_dir / "synth" / "canaries.json")
    canary_path.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_canaries(canary_path)
    click.echo(
        f"wrote {written.drops} drop(s), {written.files} file(s), {written.bytes / 1e6:.1f} MB to "
        f"{settings.store_url}/landing; {len(corpus.canaries())} canaries in {canary_path}"
    )


def _size(n: int) -> str:
    """Bytes in the largest decimal unit that keeps a digit before the point."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _instance_for(data_dir: Path):
    """The Dagster instance: ``$DAGSTER_HOME`` if set, else one kept beside the data (``DIR/.dagster``)."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = data_dir / ".dagster"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder (holds landing/).")
@click.option("--store-url", help="Object store holding the zones, if not the data folder (e.g. s3://...).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(data_dir: Path | None, store_url: str | None, as_json: bool) -> None:
    """Process every complete drop in landing/ through all stages built so far, then exit."""
    import warnings

    warnings.filterwarnings("ignore", message="Parameter `owners`")  # raised inside Dagster itself
    from clinical_pipelines.cli_catalog import curated_json, print_curated
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env(data_dir=data_dir, store_url=store_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    instance = _instance_for(settings.data_dir)
    summary = process_landing(settings, instance)
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
                    "store": settings.store_url,
                    "dagster_home": os.environ["DAGSTER_HOME"],
                    "seconds": round(summary.seconds, 2),
                    "curated": curated_json(summary.curated),
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
                _size(d.bytes),
                f"{d.quarantined} {reasons}".strip(),
                validation,
            )
        console = Console()
        console.print(table)
        console.print(
            f"{len(summary.drops)} drop(s), {total_files} file(s), {_size(total_bytes)} accepted, "
            f"{quarantined} item(s) quarantined at ingest, {summary.rejected_folders} unsafe folder(s) rejected, "
            f"{sum(d.promoted for d in summary.drops)} drop(s) passed validation "
            f"in {summary.seconds:.1f} s\n"
            f"raw zone (encrypted):  {settings.store_url}/raw\n"
            f"quarantine:            {settings.store_url}/quarantine\n"
            f"master key folder:     {settings.key_dir}\n"
            f"Dagster instance:      {os.environ['DAGSTER_HOME']}"
        )
        for d in summary.failed:
            console.print(f"[red]{d.partition_key} failed:[/red] {d.error}")
        print_curated(console, summary.curated)
    sys.exit(1 if summary.failed or (summary.curated and not summary.curated.success) else 0)


@main.group()
def quarantine() -> None:
    """Inspect quarantined items (reasons only; no PHI printed)."""


@quarantine.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--store-url")
def quarantine_list(data_dir: Path | None, store_url: str | None) -> None:
    """One JSON line per quarantined item: reason, stage, drop, hashes and sizes."""
    from clinical_pipelines.quarantine import Quarantine
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env(data_dir=data_dir, store_url=store_url)
    for record in Quarantine(settings.open_store(), settings.keyring()).records():
        click.echo(json.dumps(record.public(), sort_keys=True))


@main.group()
def deid() -> None:
    """De-identify files without the pipeline (key from CLINICAL_PIPELINES_DEID_KEY or the key folder)."""


def _deid_key() -> bytes:
    from clinical_pipelines.deid.secret import load_deid_key
    from clinical_pipelines.settings import Settings

    return load_deid_key(Settings.from_env().key_dir)


@deid.command("dicom")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", type=int, default=1, show_default=True, help="Processes to spread the files over.")
@click.option(
    "--option",
    "options",
    multiple=True,
    help="PS3.15 profile option (repeatable), e.g. rtnDevIdOpt. Default: modified dates, patient characteristics, "
    "clean descriptors.",
)
def deid_dicom(in_dir: Path, out_dir: Path, workers: int, options: tuple[str, ...]) -> None:
    """Apply the PS3.15 Basic Profile to every file in IN_DIR, writing OUT_DIR with the same layout."""
    from rich.progress import Progress

    from clinical_pipelines.deid.batch import deidentify_dicom_folder
    from clinical_pipelines.deid.profile import DEFAULT_OPTIONS

    chosen = tuple(sorted(options or DEFAULT_OPTIONS))
    key = _deid_key()
    total = sum(1 for p in in_dir.rglob("*") if p.is_file())
    with Progress(transient=True) as bar:
        task = bar.add_task("de-identifying", total=total)
        summary = deidentify_dicom_folder(
            in_dir, out_dir, key, options=chosen, workers=workers, progress=lambda n: bar.advance(task, n)
        )
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.rejected.items())) or "none"
    click.echo(
        f"{summary.files} file(s), {summary.written} written, {sum(summary.rejected.values())} refused ({reasons}); "
        f"{summary.files_per_s:.0f} files/s with {workers} worker(s); options: {', '.join(chosen)}"
    )
    sys.exit(1 if summary.files and not summary.written else 0)


@deid.command("notes")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", type=int, default=1, show_default=True, help="Processes to spread the notes over.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Notes per spaCy batch.")
def deid_notes(in_dir: Path, out_dir: Path, workers: int, batch_size: int) -> None:
    """De-identify every UTF-8 note in IN_DIR into OUT_DIR (names, ids, dates shifted per patient, ...)."""
    from rich.progress import Progress

    from clinical_pipelines.deid.batch import deidentify_notes_folder

    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise click.UsageError("the output folder must not lie inside the input folder")
    key = _deid_key()
    total = sum(1 for p in in_dir.rglob("*") if p.is_file() and not p.is_symlink())
    with Progress(transient=True) as bar:
        task = bar.add_task("de-identifying", total=total)
        summary = deidentify_notes_folder(
            in_dir, out_dir, key, workers=workers, batch_size=batch_size, progress=lambda n: bar.advance(task, n)
        )
    click.echo(
        f"{summary.files} note(s), {summary.written} written, {sum(summary.rejected.values())} refused "
        f"{summary.rejected or ''}; replaced {sum(summary.entities.values())} identifier(s) "
        f"{dict(sorted(summary.entities.items()))}; {summary.files_per_s:.1f} notes/s with {workers} worker(s)"
    )
    sys.exit(1 if summary.files and not summary.written else 0)


@deid.command("table")
@click.argument("in_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_csv", type=click.Path(dir_okay=False, path_type=Path))
def deid_table(in_csv: Path, out_csv: Path) -> None:
    """Pseudonymise, date-shift and generalise one CSV table (labs or outcomes schema)."""
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer
    from clinical_pipelines.deid.tables import deidentify_csv

    started = time.perf_counter()
    try:
        data, result = deidentify_csv(in_csv.read_bytes(), Pseudonymizer(_deid_key()))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    out_csv.write_bytes(data)
    kanon = result.report.kanon
    click.echo(
        f"{result.report.rows} row(s) of {result.report.table}; dropped {', '.join(result.report.columns_dropped)}; "
        f"k-anonymity k={kanon.k} over {', '.join(kanon.quasi_identifiers)} "
        f"in {time.perf_counter() - started:.2f} s"
    )


register_commands(main)  # catalog, manifest, reproduce, runs (clinical_pipelines/cli_catalog.py)

if __name__ == "__main__":
    main()
