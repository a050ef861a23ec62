"""The ``clinical-pipelines`` command line. Each command imports only what it needs, so it starts fast."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from clinical_pipelines.cli_catalog import register_commands

if TYPE_CHECKING:
    from clinical_pipelines.deid.batch import BatchSummary
    from clinical_pipelines.settings import Settings


def _config_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the configuration is wrong" (variables, key folder, key files): one line, exit 2."""
    from clinical_pipelines.limits import LimitsError
    from clinical_pipelines.settings import SettingsError
    from clinical_pipelines.storage.envelope import LegacyEnvelope
    from clinical_pipelines.storage.keys import KeyError_

    return (SettingsError, LimitsError, KeyError_, LegacyEnvelope)


class _Main(click.Group):
    """The top-level group: a configuration error in any command is one line naming the variable or file
    and the fix, exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except _config_errors() as exc:
            _fail(" ".join(str(exc).split()))


@click.group(cls=_Main)
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
        from clinical_pipelines.local_instance import prepare_home

        os.environ["DAGSTER_HOME"] = str(prepare_home(data_dir / ".dagster"))
    return dg.DagsterInstance.get()


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder (holds landing/).")
@click.option("--store-url", help="Object store holding the zones, if not the data folder (e.g. s3://...).")
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
    by the next one. Exit status: 0 done, 1 a drop or the curate run failed, 2 configuration error,
    3 another run holds the data folder and --no-wait was given (nothing done).
    """
    from clinical_pipelines.runlock import DataFolderBusy, run_lock
    from clinical_pipelines.settings import Settings

    settings = Settings.from_env(data_dir=data_dir, store_url=store_url)
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
    from clinical_pipelines.cli_catalog import curated_json, print_curated
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
        _fail(str(exc))
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
        if summary.interrupted_runs:
            console.print(
                f"{summary.interrupted_runs} run(s) left unfinished by an earlier, killed run were closed as "
                "failed; their drops were taken again"
            )
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
            if d.resent:
                console.print(
                    f"[red]{d.partition_key} was re-sent with different content:[/red] drops are immutable; the new "
                    "content is quarantined as drop_conflict (send it as a new drop id)"
                )
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
    """De-identify files without the pipeline (key from CLINICAL_PIPELINES_DEID_KEY or the key folder).

    Every file is validated as the pipeline validates it first; outputs are named by pseudonymous
    ids or content hashes, never by input names; the residual-PHI scan runs unless turned off.
    Exit status: 0 done, 1 residual findings (those outputs are not written) or nothing written,
    2 configuration or output-folder error.
    """


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: configuration and output-folder errors (no traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _settings() -> Settings:
    from clinical_pipelines.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as exc:  # SettingsError and malformed numbers; messages name variables, not data
        _fail(str(exc))


def _deid_key() -> bytes:
    from clinical_pipelines.deid.secret import load_deid_key
    from clinical_pipelines.storage.keys import KeyError_

    settings = _settings()
    try:
        return load_deid_key(settings.key_dir, create=settings.env != "production")
    except KeyError_ as exc:
        _fail(str(exc))


def _check_mapping_path(mapping: Path | None, in_dir: Path) -> None:
    if mapping is not None and mapping.resolve().is_relative_to(in_dir.resolve()):
        raise click.UsageError("the mapping file must not lie inside the input folder")


_MAPPING_CONTEXT = b"clinical-pipelines/envelope/2\x00deid-mapping"  # a mapping file may be renamed freely


def _write_mapping(path: Path, mapping: dict[str, str]) -> None:
    """The input -> output mapping, encrypted under the master key (envelope encryption), written atomically."""
    from clinical_pipelines.deid.outputs import OutputFolder, OutputFolderError
    from clinical_pipelines.storage.envelope import encrypt_bytes
    from clinical_pipelines.storage.keys import KeyError_

    try:
        keyring = _settings().keyring()
    except (KeyError_, ValueError, OSError) as exc:
        _fail(f"no master key to encrypt the mapping ({exc}); set CLINICAL_PIPELINES_MASTER_KEY or the key folder")
    blob = encrypt_bytes(json.dumps(mapping, sort_keys=True, indent=1).encode(), keyring, context=_MAPPING_CONTEXT)
    folder = OutputFolder(path.parent)
    try:
        folder.create()
        if path.exists():
            path.unlink()
        folder.put(path.name, blob)
    except OSError as exc:
        _fail(f"cannot write the mapping file {path} ({exc.strerror or type(exc).__name__}); give a writable path")
    except OutputFolderError as exc:
        _fail(str(exc))


def _report(summary: BatchSummary, noun: str) -> str:
    """The per-file residual lines (output names, counts per kind) and the refusals, as text."""
    lines = [f"residual PHI in {name} (not written): " + ", ".join(f"{k} x{v}" for k, v in findings.items())
             for name, findings in sorted(summary.residual.items())]  # fmt: skip
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary.rejected.items())) or "none"
    scan = f"{len(summary.residual)} with residual findings" if summary.residual_scan else "residual scan skipped"
    lines.append(f"{summary.files} {noun}, {summary.written} written, {sum(summary.rejected.values())} refused "
                 f"({reasons}), {scan}")  # fmt: skip
    return "\n".join(lines)


def _exit_status(summary: BatchSummary) -> int:
    return 1 if summary.residual or (summary.files and not summary.written) else 0


_residual_option = click.option(
    "--residual-scan/--no-residual-scan",
    default=True,
    show_default=True,
    help="Search every output for the original's identifiers and re-analyse its text; an output with a finding "
    "is not written and the exit status is 1.",
)
_mapping_option = click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write input path -> output name here, encrypted with the master key "
    "(read it back with: clinical-pipelines deid mapping FILE).",
)


@contextlib.contextmanager
def _progress(in_dir: Path) -> Iterator[Callable[[int], None] | None]:
    """A transient progress bar on a terminal (yields its advance function); nothing when output is not one."""
    if not sys.stdout.isatty():  # where rich draws its bar
        yield None
        return
    from rich.progress import Progress

    total = sum(1 for p in in_dir.rglob("*") if p.is_file() and not p.is_symlink())
    with Progress(transient=True) as bar:
        task = bar.add_task("de-identifying", total=total)
        yield lambda n: bar.advance(task, n)


def _run_batch(
    run: Callable[[dict[str, str] | None, Callable[[int], None] | None], BatchSummary],
    in_dir: Path,
    mapping: Path | None,
) -> BatchSummary:
    """Run a folder batch (``run(pairs, progress)``) under a progress bar; output-folder errors become one
    line; with ``mapping``, the input -> output names it collects are written there, encrypted."""
    from clinical_pipelines.deid.batch import skip_unused_heavy_imports
    from clinical_pipelines.deid.outputs import OutputFolderError

    skip_unused_heavy_imports()  # this process only de-identifies (with one worker, here)

    _check_mapping_path(mapping, in_dir)
    pairs: dict[str, str] | None = {} if mapping is not None else None
    try:
        with _progress(in_dir) as advance:
            summary = run(pairs, advance)
    except OutputFolderError as exc:
        _fail(str(exc))
    except ValueError as exc:  # the output folder inside the input folder
        raise click.UsageError(str(exc)) from None
    if mapping is not None and pairs is not None:
        _write_mapping(mapping, pairs)
    return summary


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
@click.option(
    "--keep-time-of-day",
    is_flag=True,
    help="Keep clock times (TM, the time in DT) and move dates by whole days only. A re-identification risk: "
    "a date plus its clock times is what RIS/PACS logs are searched by. Default: times move with the dates.",
)
@_residual_option
@_mapping_option
def deid_dicom(
    in_dir: Path,
    out_dir: Path,
    workers: int,
    options: tuple[str, ...],
    keep_time_of_day: bool,
    residual_scan: bool,
    mapping: Path | None,
) -> None:
    """Apply the PS3.15 Basic Profile to every file in IN_DIR, writing OUT_DIR/<new SOP Instance UID>.dcm."""
    from clinical_pipelines.deid.batch import deidentify_dicom_folder, skip_unused_heavy_imports
    from clinical_pipelines.deid.profile import DEFAULT_OPTIONS

    skip_unused_heavy_imports()  # with one worker, this process de-identifies (and loads spaCy for the scan)

    chosen = tuple(sorted(options or DEFAULT_OPTIONS))
    key = _deid_key()
    summary = _run_batch(
        lambda pairs, advance: deidentify_dicom_folder(in_dir, out_dir, key, options=chosen, workers=workers,
                                                       residual_scan=residual_scan, mapping=pairs, progress=advance,
                                                       keep_time_of_day=keep_time_of_day),
        in_dir,
        mapping,
    )  # fmt: skip
    kept = "; times of day kept (a re-identification risk)" if keep_time_of_day else ""
    click.echo(f"{_report(summary, 'file(s)')}; {summary.files_per_s:.0f} files/s with {workers} worker(s); "
               f"options: {', '.join(chosen)}{kept}")  # fmt: skip
    sys.exit(_exit_status(summary))


@deid.command("notes")
@click.argument("in_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", type=int, default=1, show_default=True, help="Processes to spread the notes over.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Notes per spaCy batch.")
@_residual_option
@_mapping_option
def deid_notes(
    in_dir: Path, out_dir: Path, workers: int, batch_size: int, residual_scan: bool, mapping: Path | None
) -> None:
    """De-identify every UTF-8 note in IN_DIR into OUT_DIR/<sha256 of the output>.txt (dates shifted per patient)."""
    from clinical_pipelines.deid.batch import deidentify_notes_folder, skip_unused_heavy_imports

    skip_unused_heavy_imports()  # with one worker, this process runs spaCy

    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise click.UsageError("the output folder must not lie inside the input folder")
    key = _deid_key()
    summary = _run_batch(
        lambda pairs, advance: deidentify_notes_folder(in_dir, out_dir, key, workers=workers, batch_size=batch_size,
                                                       residual_scan=residual_scan, mapping=pairs, progress=advance),
        in_dir,
        mapping,
    )  # fmt: skip
    click.echo(
        f"{_report(summary, 'note(s)')}; replaced {sum(summary.entities.values())} identifier(s) "
        f"{dict(sorted(summary.entities.items()))}; {summary.files_per_s:.1f} notes/s with {workers} worker(s)"
    )
    sys.exit(_exit_status(summary))


@deid.command("table")
@click.argument("in_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out_csv", type=click.Path(dir_okay=False, path_type=Path))
@_residual_option
def deid_table(in_csv: Path, out_csv: Path, residual_scan: bool) -> None:
    """Pseudonymise, date-shift and generalise one CSV table (labs or outcomes schema); free text de-identified."""
    from clinical_pipelines.deid.batch import skip_unused_heavy_imports
    from clinical_pipelines.deid.outputs import OutputFolder, OutputFolderError
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer
    from clinical_pipelines.deid.tables import deidentify_csv_checked

    started = time.perf_counter()
    skip_unused_heavy_imports()
    key = _deid_key()
    try:
        data = in_csv.read_bytes()
    except OSError as exc:
        _fail(f"cannot read the input table ({exc.strerror or type(exc).__name__})")
    try:
        out, result, findings = deidentify_csv_checked(data, Pseudonymizer(key), residual_scan=residual_scan)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if findings:
        click.echo("residual PHI in the de-identified table (not written): "
                   + ", ".join(f"{k} x{v}" for k, v in sorted(findings.items())))  # fmt: skip
        sys.exit(1)
    folder = OutputFolder(out_csv.parent)
    try:
        folder.create()
        out_csv.unlink(missing_ok=True)
        folder.put(out_csv.name, out)
    except OSError as exc:
        _fail(f"cannot write {out_csv} ({exc.strerror or type(exc).__name__}); give a writable path")
    except OutputFolderError as exc:
        _fail(str(exc))
    report = result.report
    kanon = report.kanon
    scan = "residual scan: clean" if residual_scan else "residual scan skipped"
    click.echo(
        f"{report.rows} row(s) of {report.table}; dropped {', '.join(report.columns_dropped) or 'none'}; "
        f"{report.cells_redacted} cell(s) outside their column's form redacted, "
        f"{report.free_text_cells} free-text cell(s) de-identified; "
        f"k-anonymity k={kanon.k} over {', '.join(kanon.quasi_identifiers)}; {scan} "
        f"in {time.perf_counter() - started:.2f} s"
    )


@deid.command("mapping")
@click.argument("mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def deid_mapping(mapping_file: Path) -> None:
    """Decrypt a --mapping file (needs the master key that wrote it) and print it as JSON: it names input files."""
    from clinical_pipelines.storage.envelope import DecryptionError, decrypt_bytes
    from clinical_pipelines.storage.keys import KeyError_

    try:
        keyring = _settings().keyring()
        click.echo(decrypt_bytes(mapping_file.read_bytes(), keyring, context=_MAPPING_CONTEXT).decode())
    except (KeyError_, DecryptionError) as exc:
        _fail(f"cannot decrypt {mapping_file} ({exc}); use the master key (CLINICAL_PIPELINES_MASTER_KEY or the "
              "key folder) that wrote it")  # fmt: skip
    except OSError as exc:
        _fail(f"cannot read {mapping_file} ({exc.strerror or type(exc).__name__})")


register_commands(main)  # catalog, manifest, reproduce, runs (clinical_pipelines/cli_catalog.py)

if __name__ == "__main__":
    main()
