"""Legal holds through the CLI over a real catalog: placed and released only with a 'hold' grant, each audited
once, idempotent per case, a dataset-wide hold covering every version, and shown by catalog show."""

from __future__ import annotations

import json

from clinical_pipelines.catalog.access import LOCAL_ADMIN
from clinical_pipelines_tests.test_access_cli import Site, site  # noqa: F401  (fixture)


def test_holds_are_granted_audited_idempotent_and_shown(site: Site) -> None:  # noqa: F811
    refused = site.cli("hold", "add", "chest_ct@1", "--case", "LIT-2026-001", "--as", "mallory")
    assert refused.exit_code == 3 and "mallory has no 'hold' grant on project chest_ct" in refused.stderr
    before = len(site.records())
    placed = site.cli("hold", "add", "chest_ct@1", "--case", "LIT-2026-001")
    assert placed.exit_code == 0 and f"held version:{site.version_id} for case LIT-2026-001" in placed.stdout
    assert site.cli("hold", "add", "chest_ct@1", "--case", "LIT-2026-001").exit_code == 0  # the same hold again
    assert site.cli("hold", "add", "chest_ct", "--case", "AUDIT-7").exit_code == 0  # every version of the dataset
    active = json.loads(site.cli("hold", "list", "--json").stdout)
    assert sorted((h["target"], h["case"]) for h in active) == [
        ("dataset:chest_ct", "AUDIT-7"), (f"version:{site.version_id}", "LIT-2026-001")
    ]  # one row per case and target, however often it was placed
    shown = json.loads(site.cli("catalog", "show", "chest_ct", "--json").stdout)
    assert sorted(h["case"] for h in shown["legal_holds"]) == ["AUDIT-7", "LIT-2026-001"]
    released = site.cli("hold", "remove", "chest_ct@1", "--case", "LIT-2026-001")
    assert released.exit_code == 0 and "released 1 hold(s)" in released.stdout
    shown = json.loads(site.cli("catalog", "show", "chest_ct", "--json").stdout)
    assert [h["case"] for h in shown["legal_holds"]] == ["AUDIT-7"]  # the other case's hold stays
    history = json.loads(site.cli("hold", "list", "--all", "--json").stdout)
    assert [(h["case"], h["released_by"]) for h in history] == [("LIT-2026-001", LOCAL_ADMIN), ("AUDIT-7", None)]
    records = [(r.principal, r.action, r.target, r.outcome, r.detail) for r in site.records()[before:]
               if r.action.startswith("hold.")]  # fmt: skip
    assert records == [
        (LOCAL_ADMIN, "hold.place", f"version:{site.version_id}", "allowed", "case=LIT-2026-001"),
        (LOCAL_ADMIN, "hold.place", f"version:{site.version_id}", "allowed", "case=LIT-2026-001"),
        (LOCAL_ADMIN, "hold.place", "dataset:chest_ct", "allowed", "case=AUDIT-7"),
        (LOCAL_ADMIN, "hold.release", f"version:{site.version_id}", "allowed", "case=LIT-2026-001 released=1"),
    ]
    bad = site.cli("hold", "add", "chest_ct", "--case", "no spaces please")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: a case id must match")
    unknown = site.cli("hold", "add", "no_such_dataset", "--case", "X-1")
    assert unknown.exit_code == 1 and "not in the catalog" in unknown.stderr
