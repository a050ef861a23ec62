"""Commands on one version by its manifest: ``manifest verify|provenance``, ``reproduce``, ``runs register``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from clinical_pipelines.cli._common import governed, governed_options, resolve_manifest, settings_for, size


@click.group()
def manifest() -> None:
    """Work with version manifests (a local file, DATASET@VERSION, or a version id)."""


@manifest.command("verify")
@click.argument("reference", metavar="MANIFEST")
@governed_options
@click.option("--workers", type=int, default=None, help="Hashing threads (default: 2 per core).")
@click.option("--json", "as_json", is_flag=True)
def manifest_verify(
    reference: str,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    principal: str | None,
    purpose: str | None,
    workers: int | None,
    as_json: bool,
) -> None:
    """Re-hash every object of MANIFEST; each missing or altered object is reported by path (exit 1).
    Needs a read grant on the version (exit 3 without)."""
    from clinical_pipelines.curate.verify import verify_manifest

    settings = settings_for(data_dir, store_url, catalog_url)
    store = settings.open_store()
    found = resolve_manifest(reference, settings, store)
    cat, access, who = governed(settings, principal)
    try:
        with access.perform(who, "read", access.version_scope(found.version_id, found.dataset), operation="verify",
                            purpose=purpose) as activity:  # fmt: skip
            report = verify_manifest(store, found, workers=workers)
            activity.detail = f"objects={report.objects} problems={len(report.problems)}"
    finally:
        cat.close()
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
            f"{found.dataset}@{found.number} {found.version_id}: {report.objects} object(s), {size(report.bytes)} "
            f"verified in {report.seconds:.2f} s ({rates['objects_per_s']} objects/s, {rates['mb_per_s']} MB/s): "
            f"{state}"
        )
    sys.exit(0 if report.ok else 1)


@manifest.command("provenance")
@click.argument("reference", metavar="MANIFEST")
@governed_options
def manifest_provenance(reference: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                        principal: str | None, purpose: str | None) -> None:  # fmt: skip
    """Print the version's lineage as a FHIR R4 Provenance resource (JSON); needs a read grant on it."""
    from clinical_pipelines.curate.provenance import provenance_resource

    settings = settings_for(data_dir, store_url, catalog_url)
    found = resolve_manifest(reference, settings, settings.open_store())
    cat, access, who = governed(settings, principal)
    try:
        with access.perform(who, "read", access.version_scope(found.version_id, found.dataset),
                            operation="provenance", purpose=purpose):  # fmt: skip
            resource = provenance_resource(found)
    finally:
        cat.close()
    click.echo(json.dumps(resource, indent=2))


@click.command()
@click.argument("reference", metavar="MANIFEST")
@click.option("--to", "folder", required=True, type=click.Path(file_okay=False, path_type=Path), help="Target folder.")
@governed_options
@click.option("--workers", type=int, default=None)
def reproduce(
    reference: str,
    folder: Path,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    principal: str | None,
    purpose: str | None,
    workers: int | None,
) -> None:
    """Materialise the exact bytes of a version into DIR (<split>/<modality>/<patient>/<sha256>.ext) and verify them.
    Needs a reproduce grant on the version (exit 3 without)."""
    from clinical_pipelines.curate.verify import reproduce as run_reproduce

    settings = settings_for(data_dir, store_url, catalog_url)
    store = settings.open_store()
    found = resolve_manifest(reference, settings, store)
    cat, access, who = governed(settings, principal)
    try:
        with access.perform(who, "reproduce", access.version_scope(found.version_id, found.dataset),
                            operation="reproduce", purpose=purpose) as activity:  # fmt: skip
            report = run_reproduce(store, found, folder, workers=workers)
            activity.detail = f"written={report.written} ok={report.ok}"
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    problems = report.problems + (report.verify.problems if report.verify else [])
    for p in problems:
        click.echo(f"{p.reason.upper()}: {p.key}" + (f" ({p.detail})" if p.detail else ""))
    click.echo(
        f"{found.dataset}@{found.number} {found.version_id}: {report.written}/{len(found.objects)} object(s), "
        f"{size(report.bytes)} written to {folder} and re-verified: {'OK' if report.ok else 'FAILED'}"
    )
    sys.exit(0 if report.ok else 1)


@click.group()
def runs() -> None:
    """Training runs and the versions they used."""


@runs.command("register")
@click.option("--manifest", "reference", required=True, help="Manifest file, DATASET@VERSION or version id.")
@click.option("--run-id", required=True, help="The training run's id (e.g. an MLflow or W&B run id).")
@click.option("--model", default=None, help="Model name (shown in catalog show).")
@governed_options
def runs_register(
    reference: str,
    run_id: str,
    model: str | None,
    data_dir: Path | None,
    store_url: str | None,
    catalog_url: str | None,
    principal: str | None,
    purpose: str | None,
) -> None:
    """Record that training run RUN_ID used the version of MANIFEST (idempotent); needs a read grant on it."""
    from clinical_pipelines.catalog.repository import CatalogError

    settings = settings_for(data_dir, store_url, catalog_url)
    found = resolve_manifest(reference, settings, settings.open_store())
    cat, access, who = governed(settings, principal)
    try:
        with access.perform(who, "read", access.version_scope(found.version_id, found.dataset),
                            operation="register-run", purpose=purpose):  # fmt: skip
            cat.register_run(run_id, found.version_id, model=model)
    except (CatalogError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    click.echo(f"run {run_id} registered as using {found.dataset}@{found.number} ({found.version_id})")


COMMANDS = [manifest, reproduce, runs]
