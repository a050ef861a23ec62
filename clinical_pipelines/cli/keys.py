"""``clinical-pipelines keys rotate|status``: master-key rotation (data keys re-wrapped, data untouched)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clinical_pipelines.cli._common import fail, governed, principal_option, settings_for, zone_options


@click.group()
def keys() -> None:
    """Master keys: rotate them (every data key re-wrapped, no data re-encrypted) and see which objects use which."""


@keys.command("rotate")
@zone_options
@principal_option
@click.option("--resume", is_flag=True,
              help="Re-wrap to the current key, no new key (an interrupted rotation; production).")  # fmt: skip
def keys_rotate(data_dir: Path | None, store_url: str | None, catalog_url: str | None, principal: str | None,
                resume: bool) -> None:  # fmt: skip
    """Make a new master key current and re-wrap every encrypted object's data key under it (raw and quarantine
    zones), streaming each object's sealed chunks through unchanged. Old keys stay, so every object is readable
    throughout; a run killed half-way is finished by ``keys rotate --resume``. In production the new key comes
    from the environment (the old ones in CLINICAL_PIPELINES_RETIRED_MASTER_KEYS) and ``--resume`` re-wraps.
    Needs a 'keys' grant on every project (exit 3 without); audited."""
    from clinical_pipelines.catalog.access import ANY, Scope
    from clinical_pipelines.storage.keys import (
        ENV_MASTER_KEY,
        ENV_MASTER_KEY_ID,
        ENV_RETIRED_MASTER_KEYS,
        add_local_key,
    )
    from clinical_pipelines.storage.rotation import rotate

    settings = settings_for(data_dir, store_url, catalog_url)
    if settings.env == "production" and not resume:
        fail(f"production keys come from configuration: put the new key in {ENV_MASTER_KEY} (and its id in "
             f"{ENV_MASTER_KEY_ID}), the old ones in {ENV_RETIRED_MASTER_KEYS} (id:base64,...), then run "
             "keys rotate --resume to re-wrap every object under the new key")  # fmt: skip
    before = settings.keyring().current_id  # a broken key folder is a configuration error (exit 2), checked first
    cat, access, who = governed(settings, principal)
    try:
        with access.perform(who, "keys", Scope(ANY, (), "keyring"), operation="rotate") as activity:
            new_id = before if resume else add_local_key(settings.key_dir)
            report = rotate(settings.open_store(), settings.keyring())
            activity.detail = (f"from={before} to={new_id} rewrapped={report.total_rewrapped} "
                               f"current={report.current}")  # fmt: skip
    finally:
        cat.close()
    click.echo(f"current master key {new_id}: {report.total_rewrapped} object(s) re-wrapped "
               f"({', '.join(f'{n} from {k}' for k, n in sorted(report.rewrapped.items())) or 'none'}), "
               f"{report.current} already current, {report.plain} not encrypted")  # fmt: skip


@keys.command("status")
@zone_options
@click.option("--json", "as_json", is_flag=True)
def keys_status(data_dir: Path | None, store_url: str | None, catalog_url: str | None, as_json: bool) -> None:
    """The current master key, and how many encrypted objects each key id wraps (headers read, nothing decrypted)."""
    from clinical_pipelines.storage.rotation import key_ids_in_use

    settings = settings_for(data_dir, store_url, catalog_url)
    current = settings.keyring().current_id
    counts = key_ids_in_use(settings.open_store())
    if as_json:
        click.echo(json.dumps({"current": current, "objects_by_key": counts}, indent=2, sort_keys=True))
        return
    click.echo(f"current master key: {current}")
    for key_id, n in sorted(counts.items()):
        click.echo(f"  {key_id}: {n} object(s){' (current)' if key_id == current else ''}")


COMMANDS = [keys]
