"""``clinical-pipelines audit verify``: check that the audit log's hash chain is unbroken."""

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


COMMANDS = [audit]
