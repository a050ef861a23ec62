"""``clinical-pipelines lifecycle set``: move a curated version between hot, warm, frozen, archived and expired."""

from __future__ import annotations

from pathlib import Path

import click

from clinical_pipelines.cli._common import governed, principal_option, settings_for, zone_options


@click.group()
def lifecycle() -> None:
    """Lifecycle states of curated versions (hot, warm, frozen, archived, expired): legal moves only, audited."""


@lifecycle.command("set")
@click.argument("reference", metavar="DATASET@VERSION")
@click.argument("state", type=click.Choice(["hot", "warm", "frozen", "archived", "expired"]))
@click.option("--reason", required=True, help="Why, as a code (release-candidate, study-closed), never free text.")
@zone_options
@principal_option
def lifecycle_set(reference: str, state: str, reason: str, data_dir: Path | None, store_url: str | None,
                  catalog_url: str | None, principal: str | None) -> None:  # fmt: skip
    """Move a version to STATE. frozen makes and verifies a copy in archive/; archived also removes its training
    shards; expired is refused under a legal hold; nothing leaves frozen but archived. Needs 'promote' (hot, warm,
    frozen) or 'delete' (archived, expired): exit 3 without; an illegal move is exit 1."""
    from clinical_pipelines.catalog.repository import CatalogError
    from clinical_pipelines.curate.lifecycle import Lifecycle, LifecycleError

    settings = settings_for(data_dir, store_url, catalog_url)
    cat, access, who = governed(settings, principal)
    try:
        move = Lifecycle(cat, access, settings.open_store()).set_state(who, reference, state, reason=reason)
    except (CatalogError, LifecycleError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    extra = []
    if move.archived_objects:
        extra.append(f"{move.archived_objects} object(s) verified in archive/")
    if move.removed_training_objects:
        extra.append(f"{move.removed_training_objects} training object(s) removed")
    click.echo(f"{move.dataset}@{move.number} {move.old} -> {move.new}" + (f" ({'; '.join(extra)})" if extra else ""))


COMMANDS = [lifecycle]
