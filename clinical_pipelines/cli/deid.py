"""``clinical-pipelines deid``: de-identify folders of DICOM files or notes, or one table, without the pipeline."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clinical_pipelines.cli._common import env_settings, fail

if TYPE_CHECKING:
    from clinical_pipelines.deid.batch import BatchSummary


@click.group()
def deid() -> None:
    """De-identify files without the pipeline (key from CLINICAL_PIPELINES_DEID_KEY or the key folder).

    Every file is validated as the pipeline validates it first; outputs are named by pseudonymous
    ids or content hashes, never by input names; the residual-PHI scan runs unless turned off.
    Exit status: 0 done, 1 residual findings (those outputs are not written) or nothing written,
    2 configuration or output-folder error.
    """


def _deid_key() -> bytes:
    from clinical_pipelines.deid.secret import load_deid_key
    from clinical_pipelines.storage.keys import KeyError_

    settings = env_settings()
    try:
        return load_deid_key(settings.key_dir, create=settings.env != "production")
    except KeyError_ as exc:
        fail(str(exc))


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
        keyring = env_settings().keyring()
    except (KeyError_, ValueError, OSError) as exc:
        fail(f"no master key to encrypt the mapping ({exc}); set CLINICAL_PIPELINES_MASTER_KEY or the key folder")
    blob = encrypt_bytes(json.dumps(mapping, sort_keys=True, indent=1).encode(), keyring, context=_MAPPING_CONTEXT)
    folder = OutputFolder(path.parent)
    try:
        folder.create()
        if path.exists():
            path.unlink()
        folder.put(path.name, blob)
    except OSError as exc:
        fail(f"cannot write the mapping file {path} ({exc.strerror or type(exc).__name__}); give a writable path")
    except OutputFolderError as exc:
        fail(str(exc))


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
        fail(str(exc))
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
        fail(f"cannot read the input table ({exc.strerror or type(exc).__name__})")
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
        fail(f"cannot write {out_csv} ({exc.strerror or type(exc).__name__}); give a writable path")
    except OutputFolderError as exc:
        fail(str(exc))
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
        keyring = env_settings().keyring()
        click.echo(decrypt_bytes(mapping_file.read_bytes(), keyring, context=_MAPPING_CONTEXT).decode())
    except (KeyError_, DecryptionError) as exc:
        fail(f"cannot decrypt {mapping_file} ({exc}); use the master key (CLINICAL_PIPELINES_MASTER_KEY or the "
              "key folder) that wrote it")  # fmt: skip
    except OSError as exc:
        fail(f"cannot read {mapping_file} ({exc.strerror or type(exc).__name__})")


COMMANDS = [deid]
