"""``clinical-pipelines quarantine``: quarantined items, by reason (no PHI printed)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clinical_pipelines.cli._common import data_dir_option, store_url_option


@click.group()
def quarantine() -> None:
    """Inspect quarantined items (reasons only; no PHI printed)."""


@quarantine.command("list")
@data_dir_option
@store_url_option
def quarantine_list(data_dir: Path | None, store_url: str | None) -> None:
    """One JSON line per quarantined item: reason, stage, drop, hashes and sizes."""
    from clinical_pipelines.cli._common import settings_for
    from clinical_pipelines.quarantine import Quarantine

    settings = settings_for(data_dir=data_dir, store_url=store_url)
    for record in Quarantine(settings.open_store(), settings.keyring()).records():
        click.echo(json.dumps(record.public(), sort_keys=True))


COMMANDS = [quarantine]
