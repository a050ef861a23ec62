"""``clinical-pipelines access grant|revoke|list|close-project|init``: who may do what to which data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clinical_pipelines.cli._common import governed, principal_option, settings_for, zone_options

_ACTIONS = ("read", "reproduce", "export", "promote", "delete", "hold", "grant", "keys")  # catalog.access.ACTIONS


@click.group()
def access() -> None:
    """Grants: principal x project x policy tag x action, with separation of duties; every change is audited."""


def _scope_options(func: object) -> object:
    func = click.option("--tag", default="*", show_default=True, help="Policy tag the grant covers (* for any).")(func)
    func = click.option("--project", default="*", show_default=True, help="Project the grant covers (* for any).")(func)
    return click.option("--action", "actions", multiple=True, required=True, type=click.Choice(_ACTIONS),
                        help="An action (repeat for several).")(func)  # fmt: skip


@access.command("grant")
@click.argument("grantee", metavar="PRINCIPAL")
@_scope_options
@zone_options
@principal_option
def access_grant(grantee: str, actions: tuple[str, ...], project: str, tag: str, data_dir: Path | None,
                 store_url: str | None, catalog_url: str | None, principal: str | None) -> None:  # fmt: skip
    """Grant PRINCIPAL each --action on --project x --tag. The acting principal (--as) needs 'grant' there,
    cannot grant to itself, and no principal may hold 'promote' or 'delete' together with 'keys' (exit 3)."""
    cat, control, who = governed(settings_for(data_dir, store_url, catalog_url), principal)
    try:
        added = control.grant(who, grantee, actions, project=project, tag=tag)
    finally:
        cat.close()
    held = len(actions) - len(added)
    click.echo(f"granted {grantee}: {', '.join(actions)} on project {project}, tag {tag}"
               + (f" ({held} already held)" if held else ""))  # fmt: skip


@access.command("revoke")
@click.argument("grantee", metavar="PRINCIPAL")
@_scope_options
@zone_options
@principal_option
def access_revoke(grantee: str, actions: tuple[str, ...], project: str, tag: str, data_dir: Path | None,
                  store_url: str | None, catalog_url: str | None, principal: str | None) -> None:  # fmt: skip
    """Revoke PRINCIPAL's grants of each --action on exactly --project x --tag (needs 'grant' there)."""
    cat, control, who = governed(settings_for(data_dir, store_url, catalog_url), principal)
    try:
        removed = control.revoke(who, grantee, actions, project=project, tag=tag)
    finally:
        cat.close()
    click.echo(f"revoked {removed} grant(s) of {grantee} on project {project}, tag {tag}")


@access.command("list")
@click.option("--principal", "grantee", help="Only this principal's grants.")
@zone_options
@click.option("--json", "as_json", is_flag=True)
def access_list(grantee: str | None, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                as_json: bool) -> None:  # fmt: skip
    """Every grant (or one principal's): action, project, tag, who granted it, when, and when last used."""
    cat, control, _who = governed(settings_for(data_dir, store_url, catalog_url), None)
    try:
        rows = control.grants(grantee)
    finally:
        cat.close()

    def when(value: object) -> str | None:
        return None if value is None else value.isoformat(timespec="seconds") + "Z"  # type: ignore[attr-defined]

    docs = [{"principal": g.principal, "action": g.action, "project": g.project, "tag": g.tag,
             "granted_by": g.granted_by, "granted_at": when(g.granted_at), "last_used_at": when(g.last_used_at)}
            for g in rows]  # fmt: skip
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"grants ({len(docs)})")
    for column in ("principal", "action", "project", "tag", "granted by", "granted at", "last used"):
        table.add_column(column)
    for d in docs:
        table.add_row(d["principal"], d["action"], d["project"], d["tag"], d["granted_by"], d["granted_at"] or "",
                      d["last_used_at"] or "never")  # fmt: skip
    Console().print(table)


@access.command("close-project")
@click.argument("project")
@zone_options
@principal_option
def access_close_project(project: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                         principal: str | None) -> None:  # fmt: skip
    """Mark PROJECT closed: the next access review revokes every grant on it (needs 'grant' on it)."""
    cat, control, who = governed(settings_for(data_dir, store_url, catalog_url), principal)
    try:
        control.close_project(who, project)
    finally:
        cat.close()
    click.echo(f"project {project} closed; the next access review revokes its grants")


@access.command("init")
@click.option("--admin", required=True, help="The first administrator's principal name.")
@zone_options
def access_init(admin: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None) -> None:
    """Create the first administrator (every action but 'keys' on everything) in a catalog with no principal
    yet; production has no local-admin, so this is its first step. Exit 1 if the catalog has principals."""
    from clinical_pipelines.catalog.access import Access
    from clinical_pipelines.cli._common import open_catalog

    cat = open_catalog(settings_for(data_dir, store_url, catalog_url))
    try:
        created = Access(cat.engine).bootstrap(admin, by="access-init")
    finally:
        cat.close()
    if not created:
        raise click.ClickException("the catalog already has principals: grant through an administrator instead")
    click.echo(f"administrator {admin} created (every action but keys, on every project and tag)")


COMMANDS = [access]
