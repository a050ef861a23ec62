"""``clinical-pipelines catalog search|show``: find and inspect curated dataset versions (no PHI)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from clinical_pipelines.cli._common import governed, governed_options, settings_for, size


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
@governed_options
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
    principal: str | None,
    purpose: str | None,
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
    """Find curated versions by modality, body part, age band, dates, labels, PHI status, policy tag, owner.

    Lists only versions the principal may read; refused (exit 3) when it holds no read grant at all.
    """
    from clinical_pipelines.catalog.access import Scope
    from clinical_pipelines.catalog.search import SearchFilters, search

    age_min, age_max = _band(age_band)
    filters = SearchFilters(
        modality=modality, body_part=body_part, age_min=age_min, age_max=age_max,
        date_from=_date(date_from, "--from"), date_to=_date(date_to, "--to"), labelled=labelled,
        phi_status=phi_status, policy_tag=policy_tag, owner=owner, text=text, all_versions=all_versions,
    )  # fmt: skip
    cat, access, who = governed(settings_for(data_dir, store_url, catalog_url), principal)
    found = search(cat, filters)
    scopes = [Scope(r["project"], tuple(r["policy_tags"]), f"version:{r['version_id']}") for r in found]
    rows = [r for r, readable in zip(found, access.readable(who, "read", scopes), strict=True) if readable]
    access.authorize_somewhere(who, "read", operation="search", target="catalog", purpose=purpose,
                               detail=f"results={len(rows)} hidden={len(found) - len(rows)}")  # fmt: skip
    cat.close()
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
            f"{r['labelled_patients']}/{r['patients']}", str(r["objects"]), size(r["bytes"]),
            ", ".join(r["policy_tags"]), r["phi_status"],
        )  # fmt: skip
    Console().print(table)


@catalog.command("show")
@click.argument("reference", metavar="DATASET[@VERSION]")
@governed_options
@click.option("--json", "as_json", is_flag=True)
def catalog_show(reference: str, data_dir: Path | None, store_url: str | None, catalog_url: str | None,
                 principal: str | None, purpose: str | None, as_json: bool) -> None:  # fmt: skip
    """Purpose, owner, policy, retention, quality results, lineage, the training runs that used a version, who may
    read it and its last 10 audit records (needs a read grant on it: exit 3 without)."""
    from clinical_pipelines.catalog.holds import LegalHolds
    from clinical_pipelines.catalog.repository import CatalogError

    dataset, _, version = reference.partition("@")
    cat, access, who = governed(settings_for(data_dir, store_url, catalog_url), principal)
    try:
        scope = access.version_scope(cat.resolve(dataset, version or None).version_id)
        with access.perform(who, "read", scope, operation="show", purpose=purpose):
            info = cat.show(dataset, version or None)
            info["readers"] = access.who_may("read", scope)
            held = LegalHolds(cat, access).covering(info["dataset"], info["version_id"])
            info["legal_holds"] = [{"case": h.case_id, "target": h.target, "placed_by": h.placed_by} for h in held]
            info["audit"] = [
                {"seq": r.seq, "at": r.at + "Z", "principal": r.principal, "action": r.action, "outcome": r.outcome,
                 "purpose": r.purpose, "detail": r.detail}
                for r in access.audit.for_target(scope.target, limit=10)
            ]  # fmt: skip
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        cat.close()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    latest = " (latest)" if info["version"] == info["latest_version"] else f" (latest is {info['latest_version']})"
    console.print(f"[bold]{info['dataset']}@{info['version']}[/bold]{latest}  id {info['version_id']}")
    for label, value in (
        ("purpose", info["purpose"]), ("owner", info["owner"]), ("project", info["project"]),
        ("policy tags", ", ".join(info["policy_tags"])), ("labels", ", ".join(info["labels"])),
        ("retention", info["retention"]), ("PHI status", info["phi_status"]),
        ("lifecycle", f"{info['lifecycle']['state']}" + (f" since {info['lifecycle']['changed_at']} "
                      f"({info['lifecycle']['reason']})" if info["lifecycle"]["changed_at"] else "")),
        ("de-id profile", f"{info['deid']['profile']} {info['deid']['version']} "
                          f"({', '.join(info['deid']['options'])})"),
        ("manifest", f"{info['store']}/{info['manifest']}"), ("code version", info["code_version"]),
        ("contents", f"{info['objects']} objects, {size(info['bytes'])}, {info['patients']} patients "
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
    console.print("  may read       " + (", ".join(info["readers"]) or "-"))
    holds = ", ".join(f"{h['case']} ({h['target']}, by {h['placed_by']})" for h in info["legal_holds"])
    console.print("  legal holds    " + (holds or "none"))
    audit = Table(title="last audit records")
    for column in ("seq", "at", "principal", "action", "outcome", "purpose", "detail"):
        audit.add_column(column)
    for r in info["audit"]:
        audit.add_row(str(r["seq"]), r["at"], r["principal"], r["action"], r["outcome"], r["purpose"] or "",
                      r["detail"] or "")  # fmt: skip
    console.print(audit)


COMMANDS = [catalog]
