"""CLI commands for curated versions: ``catalog search|show``, ``manifest verify|provenance``, ``reproduce``,
``runs register``. Imports stay inside commands so ``clinical-pipelines --help`` starts fast."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from clinical_pipelines.catalog.repository import Catalog
    from clinical_pipelines.curate.manifest import Manifest
    from clinical_pipelines.defs.curate.headless import CurateRun
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.storage import ObjectStore

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _common(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder."),
            click.option("--store-url", help="Object store holding the zones, if not the data folder."),
            click.option("--catalog-url", help="Catalog database URL (default: CLINICAL_PIPELINES_CATALOG_URL)."),
        ]
    ):
        func = option(func)
    return func


def _settings(data_dir: Path | None, store_url: str | None, catalog_url: str | None) -> Settings:
    from clinical_pipelines.settings import Settings

    return Settings.from_env(data_dir=data_dir, store_url=store_url, catalog_url=catalog_url)


def _catalog(settings: Settings) -> Catalog:
    from clinical_pipelines.catalog.repository import Catalog

    return Catalog.open(settings.catalog_url, store_url=settings.store_url)


def resolve_manifest(reference: str, settings: Settings, store: ObjectStore) -> Manifest:
    """A manifest from a local file path, ``DATASET@VERSION``, ``DATASET`` (latest) or a version id."""
    from clinical_pipelines.catalog.repository import CatalogError
    from clinical_pipelines.curate.manifest import ManifestError, find_manifest, load_manifest, read_manifest_file

    try:
        if Path(reference).is_file():
            return read_manifest_file(reference)
        if _HEX64.match(reference):
            ref = _catalog(settings).find_version(reference)
            return load_manifest(store, ref.dataset, ref.version_id) if ref else find_manifest(store, reference)
        dataset, _, version = reference.partition("@")
        ref = _catalog(settings).resolve(dataset, version or None)
        return load_manifest(store, ref.dataset, ref.version_id)
    except (ManifestError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from None


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- catalog -------------------------------------------------------------------------------------


@click.group()
def catalog() -> None:
    """Search and inspect curated dataset versions (no PHI: pseudonyms, hashes and counts only)."""


def _band(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    match = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*|\s*(\d+)\s*\+\s*", value)
    if not match:
        raise click.BadParameter("use MIN-MAX, MIN- , -MAX or MIN+ (years)", param_hint="--age-band")
    low, high, plus = match.groups()
    if plus:
        return int(plus), None
    return (int(low) if low else None), (int(high) if high else None)


def _date(value: str | None, hint: str) -> str | None:
    if not value:
        return None
    text = value.replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise click.BadParameter("use YYYY-MM-DD", param_hint=hint)
    return text


@catalog.command("search")
@_common
@click.option("--modality", help="dicom, notes, labs, outcomes, or a DICOM modality (CT, MR).")
@click.option("--body-part", help="DICOM body part (e.g. CHEST).")
@click.option("--age-band", help="Cohort ages overlapping MIN-MAX years (e.g. 18-64, 65+).")
@click.option("--from", "date_from", help="Study dates (shifted) on or after YYYY-MM-DD.")
@click.option("--to", "date_to", help="Study dates (shifted) on or before YYYY-MM-DD.")
@click.option("--labelled/--unlabelled", default=None, help="Only versions with / without labels.")
@click.option("--phi-status", help="e.g. de-identified.")
@click.option("--tag", "policy_tag", help="Policy tag.")
@click.option("--owner")
@click.option("--text", help="Substring of the dataset name or purpose.")
@click.option("--all-versions", is_flag=True, help="Every version, not just each dataset's latest.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def catalog_search(
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    modality: str | None,
    body_part: str | None,
    age_band: str | None,
    date_from: str | None,
    date_to: str | None,
    labelled: bool | None,
    phi_status: str | None,
    policy_tag: str | None,
    owner: str | None,
    text: str | None,
    all_versions: bool,
    as_json: bool,
) -> None:
    """Find curated versions by modality, body part, age band, dates, labels, PHI status, policy tag, owner."""
    from clinical_pipelines.catalog.search import SearchFilters, search

    age_min, age_max = _band(age_band)
    filters = SearchFilters(
        modality=modality, body_part=body_part, age_min=age_min, age_max=age_max,
        date_from=_date(date_from, "--from"), date_to=_date(date_to, "--to"), labelled=labelled,
        phi_status=phi_status, policy_tag=policy_tag, owner=owner, text=text, all_versions=all_versions,
    )  # fmt: skip
    rows = search(_catalog(_settings(data_dir, store_url, catalog_url)), filters)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"curated versions ({len(rows)})")
    for column in ("dataset", "version", "id", "owner", "modalities", "body parts", "ages", "labelled", "objects",
                   "size", "tags", "PHI"):  # fmt: skip
        table.add_column(column)
    for r in rows:
        ages = "-".join("" if a is None else str(a) for a in r["ages"]) if any(a is not None for a in r["ages"]) else ""
        table.add_row(
            r["dataset"], str(r["version"]), r["version_id"][:12], r["owner"],
            ", ".join(r["modalities"] + r["imaging_modalities"]), ", ".join(r["body_parts"]), ages,
            f"{r['labelled_patients']}/{r['patients']}", str(r["objects"]), _size(r["bytes"]),
            ", ".join(r["policy_tags"]), r["phi_status"],
        )  # fmt: skip
    Console().print(table)


@catalog.command("show")
@click.argument("reference", metavar="DATASET[@VERSION]")
@_common
@click.option("--json", "as_json", is_flag=True)
def catalog_show(
    reference: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None, as_json: bool
) -> None:
    """Purpose, owner, policy, retention, quality results, lineage and the training runs that used a version."""
    from clinical_pipelines.catalog.repository import CatalogError

    dataset, _, version = reference.partition("@")
    try:
        info = _catalog(_settings(data_dir, store_url, catalog_url)).show(dataset, version or None)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    latest = " (latest)" if info["version"] == info["latest_version"] else f" (latest is {info['latest_version']})"
    console.print(f"[bold]{info['dataset']}@{info['version']}[/bold]{latest}  id {info['version_id']}")
    for label, value in (
        ("purpose", info["purpose"]), ("owner", info["owner"]), ("policy tags", ", ".join(info["policy_tags"])),
        ("retention", info["retention"]), ("PHI status", info["phi_status"]),
        ("de-id profile", f"{info['deid']['profile']} {info['deid']['version']} "
                          f"({', '.join(info['deid']['options'])})"),
        ("manifest", f"{info['store']}/{info['manifest']}"), ("code version", info["code_version"]),
        ("contents", f"{info['objects']} objects, {_size(info['bytes'])}, {info['patients']} patients "
                     f"({info['labelled_patients']} labelled)"),
        ("created", info["created_at"]),
    ):  # fmt: skip
        console.print(f"  {label:<14} {value}")
    quality = Table(title="quality")
    for column in ("check", "result", "severity", "detail"):
        quality.add_column(column)
    for q in info["quality"]:
        result = "[green]passed[/green]" if q["passed"] else "[red]FAILED[/red]"
        quality.add_row(q["name"], result, q["severity"], json.dumps(q["detail"], sort_keys=True))
    console.print(quality)
    console.print("  lineage from   " + (", ".join(info["lineage"]["from"]) or "-"))
    console.print("  lineage to     " + (", ".join(info["lineage"]["to"]) or "-"))
    runs = ", ".join(f"{r['run_id']}" + (f" ({r['model']})" if r["model"] else "") for r in info["training_runs"])
    console.print("  used by runs   " + (runs or "none registered"))


# -- manifest / reproduce / runs -------------------------------------------------------------------


@click.group()
def manifest() -> None:
    """Work with version manifests (a local file, DATASET@VERSION, or a version id)."""


@manifest.command("verify")
@click.argument("reference", metavar="MANIFEST")
@_common
@click.option("--workers", type=int, default=None, help="Hashing threads (default: 2 per core).")
@click.option("--json", "as_json", is_flag=True)
def manifest_verify(
    reference: str,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Re-hash every object of MANIFEST; each missing or altered object is reported by path (exit 1)."""
    from clinical_pipelines.curate.verify import verify_manifest

    settings = _settings(data_dir, store_url, catalog_url)
    store = settings.open_store()
    found = resolve_manifest(reference, settings, store)
    report = verify_manifest(store, found, workers=workers)
    if as_json:
        click.echo(json.dumps({
            "dataset": found.dataset, "version": found.number, "version_id": found.version_id,
            "objects": report.objects, "bytes": report.bytes, "seconds": round(report.seconds, 3), "ok": report.ok,
            "problems": [{"key": p.key, "reason": p.reason, "detail": p.detail} for p in report.problems],
        }, indent=2))  # fmt: skip
    else:
        for p in report.problems:
            click.echo(f"{p.reason.upper()}: {p.key}" + (f" ({p.detail})" if p.detail else ""))
        rates = report.rates()
        state = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
        click.echo(
            f"{found.dataset}@{found.number} {found.version_id}: {report.objects} object(s), {_size(report.bytes)} "
            f"verified in {report.seconds:.2f} s ({rates['objects_per_s']} objects/s, {rates['mb_per_s']} MB/s): "
            f"{state}"
        )
    sys.exit(0 if report.ok else 1)


@manifest.command("provenance")
@click.argument("reference", metavar="MANIFEST")
@_common
def manifest_provenance(reference: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None) -> None:
    """Print the version's lineage as a FHIR R4 Provenance resource (JSON)."""
    from clinical_pipelines.curate.provenance import provenance_resource

    settings = _settings(data_dir, store_url, catalog_url)
    click.echo(json.dumps(provenance_resource(resolve_manifest(reference, settings, settings.open_store())), indent=2))


@click.command()
@click.argument("reference", metavar="MANIFEST")
@click.option("--to", "folder", required=True, type=click.Path(file_okay=False, path_type=Path), help="Target folder.")
@_common
@click.option("--workers", type=int, default=None)
def reproduce(
    reference: str,
    folder: Path,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    workers: int | None,
) -> None:
    """Materialise the exact bytes of a version into DIR (<split>/<modality>/<patient>/<sha256>.ext) and verify them."""
    from clinical_pipelines.curate.verify import reproduce as run_reproduce

    settings = _settings(data_dir, store_url, catalog_url)
    store = settings.open_store()
    found = resolve_manifest(reference, settings, store)
    try:
        report = run_reproduce(store, found, folder, workers=workers)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    problems = report.problems + (report.verify.problems if report.verify else [])
    for p in problems:
        click.echo(f"{p.reason.upper()}: {p.key}" + (f" ({p.detail})" if p.detail else ""))
    click.echo(
        f"{found.dataset}@{found.number} {found.version_id}: {report.written}/{len(found.objects)} object(s), "
        f"{_size(report.bytes)} written to {folder} and re-verified: {'OK' if report.ok else 'FAILED'}"
    )
    sys.exit(0 if report.ok else 1)


@click.group()
def runs() -> None:
    """Training runs and the versions they used."""


@runs.command("register")
@click.option("--manifest", "reference", required=True, help="Manifest file, DATASET@VERSION or version id.")
@click.option("--run-id", required=True, help="The training run's id (e.g. an MLflow or W&B run id).")
@click.option("--model", default=None, help="Model name (shown in catalog show).")
@_common
def runs_register(
    reference: str,
    run_id: str,
    model: str | None,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
) -> None:
    """Record that training run RUN_ID used the version of MANIFEST (idempotent)."""
    from clinical_pipelines.catalog.repository import CatalogError

    settings = _settings(data_dir, store_url, catalog_url)
    found = resolve_manifest(reference, settings, settings.open_store())
    try:
        _catalog(settings).register_run(run_id, found.version_id, model=model)
    except (CatalogError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"run {run_id} registered as using {found.dataset}@{found.number} ({found.version_id})")


def register_commands(group: click.Group) -> None:
    """Add this module's commands to the top-level ``clinical-pipelines`` group."""
    for command in (catalog, manifest, reproduce, runs):
        group.add_command(command)


# -- helpers for `clinical-pipelines run` ------------------------------------------------------------


def curated_json(run: CurateRun | None) -> list[dict[str, Any]]:
    """The curated outcomes of a headless run as JSON-ready dicts."""
    return [dict(vars(o), quality_failed=list(o.quality_failed)) for o in run.datasets] if run else []


def print_curated(console: Any, run: CurateRun | None) -> None:
    """Print the curated versions a headless run built or found (one line each)."""
    if run is None:
        return
    for o in run.datasets:
        if o.version is None:
            console.print(f"curated {o.dataset}: {o.skipped or 'no matching objects'} yet, no version built")
            continue
        state = "new version" if o.new_version else "unchanged"
        console.print(
            f"curated {o.dataset}@{o.version} ({state}) {o.version_id}: {o.objects} objects, {_size(o.bytes)}, "
            f"{o.patients} patients; manifest {o.manifest}"
            + (f" [red]quality failed: {', '.join(o.quality_failed)}[/red]" if o.quality_failed else "")
        )
        if o.shards:
            splits = ", ".join(f"{k} {v}" for k, v in sorted((o.samples_per_split or {}).items()))
            console.print(f"  training-ready: {o.shards} shard(s) ({splits} samples); index {o.index}")
    if not run.success:
        console.print(f"[red]curate run failed:[/red] {run.error}")
