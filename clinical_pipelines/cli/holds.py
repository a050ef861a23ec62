"""``clinical-pipelines hold add|remove|list``: legal holds on a dataset or one version (a hold always wins)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clinical_pipelines.cli._common import governed, governed_options, settings_for, zone_options


@click.group()
def hold() -> None:
    """Legal holds: what they cover is kept whatever retention says, until released (needs a 'hold' grant)."""


def _holds(settings_args: tuple[Path | None, str | None, str | None], principal: str | None):  # type: ignore[no-untyped-def]
    from clinical_pipelines.catalog.holds import LegalHolds

    cat, access, who = governed(settings_for(*settings_args), principal)
    return cat, LegalHolds(cat, access), who


@hold.command("add")
@click.argument("target", metavar="DATASET[@VERSION]")
@click.option("--case", "case_id", required=True, help="The case (litigation, investigation) id.")
@governed_options
def hold_add(target: str, case_id: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
             principal: str | None, purpose: str | None) -> None:  # fmt: skip
    """Hold DATASET (every version, present and future) or DATASET@VERSION for --case; audited."""
    from clinical_pipelines.catalog.repository import CatalogError

    cat, holds, who = _holds((data_dir, store_url, catalog_url), principal)
    try:
        placed = holds.place(who, target, case_id, purpose=purpose)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    since = placed.placed_at.isoformat(timespec="seconds")
    click.echo(f"held {placed.target} for case {placed.case_id} (since {since}Z)")


@hold.command("remove")
@click.argument("target", metavar="DATASET[@VERSION]")
@click.option("--case", "case_id", required=True, help="The case whose hold on TARGET ends.")
@governed_options
def hold_remove(target: str, case_id: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                principal: str | None, purpose: str | None) -> None:  # fmt: skip
    """Release --case's hold on exactly TARGET (other cases' holds stay); audited."""
    from clinical_pipelines.catalog.repository import CatalogError

    cat, holds, who = _holds((data_dir, store_url, catalog_url), principal)
    try:
        released = holds.release(who, target, case_id, purpose=purpose)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    click.echo(f"released {released} hold(s) of case {case_id} on {target}")


@hold.command("list")
@zone_options
@click.option("--all", "include_released", is_flag=True, help="Released holds too.")
@click.option("--json", "as_json", is_flag=True)
def hold_list(data_dir: Path | None, store_url: str | None, catalog_url: str | None, include_released: bool,
              as_json: bool) -> None:  # fmt: skip
    """Active legal holds (with --all, released ones too)."""
    cat, holds, _who = _holds((data_dir, store_url, catalog_url), None)
    try:
        rows = holds.holds(include_released=include_released)
    finally:
        cat.close()

    def when(value: object) -> str | None:
        return None if value is None else value.isoformat(timespec="seconds") + "Z"  # type: ignore[attr-defined]

    docs = [{"target": h.target, "dataset": h.dataset, "version_id": h.version_id, "case": h.case_id,
             "placed_by": h.placed_by, "placed_at": when(h.placed_at), "released_by": h.released_by,
             "released_at": when(h.released_at)} for h in rows]  # fmt: skip
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    for d in docs:
        state = f"released by {d['released_by']} {d['released_at']}" if d["released_at"] else "active"
        click.echo(f"{d['target']}  case {d['case']}  placed by {d['placed_by']} {d['placed_at']}  {state}")
    if not docs:
        click.echo("no legal holds")


COMMANDS = [hold]
