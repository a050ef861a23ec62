"""``clinical-pipelines audit verify|export|verify-export|public-key``: the audit log's chain, its signed exports."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from clinical_pipelines.cli._common import open_catalog, settings_for, zone_options


@click.group()
def audit() -> None:
    """The audit log: who did what to which dataset version, hash-chained in the catalog database."""


def _head(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    match = re.fullmatch(r"(\d+):([0-9a-f]{64})", value.strip())
    if not match:
        raise click.BadParameter("use SEQ:SHA256 (a head an earlier verify printed)", param_hint="--head")
    return int(match.group(1)), match.group(2)


@audit.command("verify")
@zone_options
@click.option("--head", "expected_head", help="SEQ:SHA256 of a head recorded earlier: also detects a cut-off end.")
def audit_verify(data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                 expected_head: str | None) -> None:  # fmt: skip
    """Walk the audit log's chain from its first record.

    Prints the number of records and the head (SEQ:SHA256) and exits 0 when every record is what the chain
    says; otherwise names the first record that was edited, deleted, inserted or reordered and exits 1.
    """
    from clinical_pipelines.catalog.audit import AuditLog

    head = _head(expected_head)
    catalog = open_catalog(settings_for(data_dir, store_url, catalog_url))
    try:
        result = AuditLog(catalog.engine).verify(expected_head=head)
    finally:
        catalog.close()
    if result.intact:
        click.echo(f"audit log intact: {result.records} record(s), head {result.head_seq}:{result.head_hash}")
        return
    click.echo(
        f"audit log broken at record {result.broken_at} ({result.problem}); the {result.records} record(s) "
        f"before it are intact, up to {result.head_seq}:{result.head_hash}",
        err=True,
    )
    sys.exit(1)


@audit.command("export")
@zone_options
def audit_export(data_dir: Path | None, store_url: str | None, catalog_url: str | None) -> None:
    """Export the records after the last export as FHIR R4 AuditEvent NDJSON into archive/audit/, each file with a
    head signed by the audit signing key (the Dagster job audit_export does the same daily)."""
    from clinical_pipelines.catalog.audit_export import export_audit, load_signing_key

    settings = settings_for(data_dir, store_url, catalog_url)
    key = load_signing_key(settings.key_dir, production=settings.env == "production")
    catalog = open_catalog(settings)
    try:
        report = export_audit(catalog.engine, settings.open_store(), key)
    finally:
        catalog.close()
    if not report.heads:
        click.echo(f"nothing new to export: exported up to {report.head_seq}:{report.head_hash}")
        return
    for head in report.heads:
        click.echo(f"wrote {head}")
    click.echo(f"exported {report.records} record(s); signed head {report.head_seq}:{report.head_hash}")


@audit.command("verify-export")
@click.argument("heads", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                metavar="HEAD.json...")  # fmt: skip
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The signer's public key (PEM), from a trusted channel; else the key each head names.")  # fmt: skip
def audit_verify_export(heads: tuple[Path, ...], public_key: Path | None) -> None:
    """Check exported files without the database: signatures, digests, every record's hash and link, and that
    the exports given join up. Exit 0 when all hold, 1 naming the first problem."""
    from contextlib import ExitStack

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from clinical_pipelines.catalog.audit_export import verify_export

    key = None
    if public_key is not None:
        try:
            key = load_pem_public_key(public_key.read_bytes())
        except ValueError:
            raise click.BadParameter("not a PEM public key", param_hint="--public-key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise click.BadParameter("not an Ed25519 public key", param_hint="--public-key")
    with ExitStack() as stack:
        pairs = []
        for head in heads:
            raw = head.read_bytes()
            name = head.name.removesuffix(".head.json") + ".ndjson"
            ndjson = head.with_name(name)
            if not ndjson.is_file():
                raise click.ClickException(f"{ndjson} is missing: it belongs beside {head.name}")
            pairs.append((raw, stack.enter_context(ndjson.open("rb"))))
        result = verify_export(pairs, key)
    if not result.ok:
        click.echo(f"export broken: {result.problem}; {result.records} record(s) before it verified", err=True)
        sys.exit(1)
    trust = "with the given public key" if key else "with the key named in the heads (pass --public-key to trust it)"
    click.echo(f"export intact: {result.records} record(s), head {result.head_seq}:{result.head_hash}, "
               f"signed by {result.key_id}, checked {trust}")  # fmt: skip


@audit.command("public-key")
@zone_options
def audit_public_key(data_dir: Path | None, store_url: str | None, catalog_url: str | None) -> None:
    """Print the audit signing key's public half (PEM) for auditors."""
    from clinical_pipelines.catalog.audit_export import load_signing_key, public_pem

    settings = settings_for(data_dir, store_url, catalog_url)
    key = load_signing_key(settings.key_dir, production=settings.env == "production")
    click.echo(public_pem(key.public_key()).decode(), nl=False)


COMMANDS = [audit]
