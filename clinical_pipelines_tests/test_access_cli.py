"""Every governed entry point (CLI commands and the training reader) over a real catalog and store: refused
without a grant (exit 3, one line naming the grant, audited, nothing done), allowed with one (audited exactly
once), and ``access grant|revoke|list|close-project|init`` end to end."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from clinical_pipelines.catalog.access import LOCAL_ADMIN, AccessDenied
from clinical_pipelines.catalog.audit import AuditLog, Record
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.cli import main
from clinical_pipelines.curate.build import build_version
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import build_training_shards
from clinical_pipelines.training.governed import open_training_dataset
from clinical_pipelines_tests.test_curate_support import FakeDrop, Patient, spec, write_deid_drop


@dataclass
class Site:
    data: Path
    version_id: str
    out: Path

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--data-dir", str(self.data)], catch_exceptions=False)

    def records(self) -> list[Record]:
        catalog = Catalog.open(f"sqlite:///{self.data / 'catalog.sqlite'}")
        try:
            return [Record(*row) for row in AuditLog(catalog.engine).rows()]
        finally:
            catalog.close()


@pytest.fixture
def site(tmp_path: Path, key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """One curated version (chest_ct@1, tags imaging + research) in a local data folder."""
    for name in [k for k in os.environ if k.startswith("CLINICAL_PIPELINES_") and k != "CLINICAL_PIPELINES_KEY_DIR"]:
        monkeypatch.delenv(name)
    data = tmp_path / "data"
    store = LocalObjectStore(data, fsync=False)
    write_deid_drop(store, FakeDrop("site-a", "d1", [Patient(f"PSN-ADULTCT{i:06d}", age="050Y") for i in range(4)]))
    catalog = Catalog.open(f"sqlite:///{data / 'catalog.sqlite'}", store_url=store.url)
    version_id = build_version(store, spec(), catalog=catalog).version_id
    catalog.close()
    yield Site(data, version_id, tmp_path / "out")


# (arguments, the grant action each needs, the audit action it records)
ENTRY_POINTS = [
    (["catalog", "show", "chest_ct@1"], "read", "read.show"),
    (["catalog", "search"], "read", "read.search"),
    (["manifest", "verify", "chest_ct@1"], "read", "read.verify"),
    (["manifest", "provenance", "chest_ct@1"], "read", "read.provenance"),
    (["reproduce", "chest_ct@1", "--to", "{out}"], "reproduce", "reproduce.reproduce"),
    (["runs", "register", "--manifest", "chest_ct@1", "--run-id", "mlflow-1"], "read", "read.register-run"),
]


def _args(site: Site, args: list[str]) -> list[str]:
    return [a.replace("{out}", str(site.out)) for a in args]


@pytest.mark.parametrize(("args", "action", "audited"), ENTRY_POINTS, ids=[" ".join(e[0][:2]) for e in ENTRY_POINTS])
def test_each_entry_point_is_refused_without_a_grant_and_audited_once_with_one(
    site: Site, args: list[str], action: str, audited: str
) -> None:
    assert site.cli("access", "list").exit_code == 0  # the local default: local-admin exists now
    before = len(site.records())
    refused = site.cli(*_args(site, args), "--as", "mallory")
    assert refused.exit_code == 3, refused.output
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refused: mallory has no '{action}' grant"), refused.stderr
    assert "clinical-pipelines access grant mallory --action " + action in lines[0]
    assert refused.stdout == "" and not site.out.exists()  # nothing was done
    after_refusal = site.records()[before:]
    assert [(r.principal, r.action, r.outcome) for r in after_refusal] == [("mallory", audited, "refused")]

    allowed = site.cli(*_args(site, args), "--purpose", "qa")  # as local-admin, the local default
    assert allowed.exit_code == 0, allowed.output
    new = site.records()[before + 1 :]
    assert [(r.principal, r.action, r.outcome, r.purpose) for r in new] == [(LOCAL_ADMIN, audited, "allowed", "qa")]
    target = "catalog" if audited == "read.search" else f"version:{site.version_id}"
    assert new[0].target == target


def test_a_grant_on_the_project_and_its_tags_lets_a_principal_in_and_revoking_takes_it_away(site: Site) -> None:
    assert site.cli("access", "grant", "alice", "--action", "read", "--project", "chest_ct",
                    "--tag", "research").exit_code == 0  # fmt: skip
    partial = site.cli("catalog", "show", "chest_ct", "--as", "alice")
    assert partial.exit_code == 3 and "for tag imaging" in partial.stderr  # the data is also tagged imaging
    hidden = json.loads(site.cli("catalog", "search", "--json", "--as", "alice").stdout)
    assert hidden == []  # search lists only what the principal may read
    granted = site.cli("access", "grant", "alice", "--action", "read", "--project", "chest_ct", "--tag", "imaging")
    assert granted.exit_code == 0 and "granted alice: read on project chest_ct, tag imaging" in granted.stdout
    shown = json.loads(site.cli("catalog", "show", "chest_ct", "--json", "--as", "alice").stdout)
    assert shown["readers"] == ["alice", LOCAL_ADMIN] and shown["project"] == "chest_ct"
    # the version's audit trail so far, newest first (this show is recorded when it ends)
    assert [(r["principal"], r["action"], r["outcome"]) for r in shown["audit"]] == [
        ("alice", "read.show", "refused"), ("pipeline", "promote.build-version", "allowed")
    ]
    assert [r["dataset"] for r in json.loads(site.cli("catalog", "search", "--json", "--as", "alice").stdout)] == [
        "chest_ct"
    ]
    table = site.cli("catalog", "show", "chest_ct", "--as", "alice")
    assert "may read" in table.stdout and "last audit records" in table.stdout
    listed = json.loads(site.cli("access", "list", "--principal", "alice", "--json").stdout)
    assert {(g["action"], g["project"], g["tag"]) for g in listed} == {("read", "chest_ct", "research"),
                                                                       ("read", "chest_ct", "imaging")}  # fmt: skip
    assert all(g["last_used_at"] for g in listed)
    revoked = site.cli("access", "revoke", "alice", "--action", "read", "--project", "chest_ct", "--tag", "imaging")
    assert revoked.exit_code == 0 and "revoked 1 grant(s)" in revoked.stdout
    assert site.cli("catalog", "show", "chest_ct", "--as", "alice").exit_code == 3


def test_grant_refusals_are_one_line_exit_3(site: Site) -> None:
    site.cli("access", "grant", "keeper", "--action", "keys")
    clash = site.cli("access", "grant", "keeper", "--action", "promote")
    assert clash.exit_code == 3 and clash.stderr.strip() == (
        "refused: separation of duties: keeper holds 'keys', so it cannot also hold 'promote'"
    )
    both = site.cli("access", "grant", "x1", "--action", "delete", "--action", "keys")
    assert both.exit_code == 3 and "cannot hold both 'delete' and 'keys'" in both.stderr
    self_grant = site.cli("access", "grant", LOCAL_ADMIN, "--action", "keys")
    assert self_grant.exit_code == 3 and "cannot grant to itself" in self_grant.stderr
    no_grant = site.cli("access", "grant", "x2", "--action", "read", "--as", "keeper")
    assert no_grant.exit_code == 3 and "keeper has no 'grant' grant on project *" in no_grant.stderr
    bad_name = site.cli("access", "grant", "a b", "--action", "read")
    assert bad_name.exit_code == 2 and bad_name.stderr.startswith("error: a principal name must match")
    bad_action = site.cli("access", "grant", "x3", "--action", "sudo")
    assert bad_action.exit_code == 2 and "'sudo' is not one of" in bad_action.stderr
    free_text = site.cli("catalog", "show", "chest_ct", "--purpose", "follow up on John Smith")
    assert free_text.exit_code == 2 and "a purpose must be a code" in free_text.stderr  # the audit log holds no PHI
    assert "John" not in repr(site.records())
    closed = site.cli("access", "close-project", "chest_ct")
    assert closed.exit_code == 0 and "closed" in closed.stdout
    assert site.cli("access", "init", "--admin", "root").exit_code == 1  # principals exist already
    assert AuditLog(Catalog.open(f"sqlite:///{site.data / 'catalog.sqlite'}").engine).verify().intact


def test_production_needs_a_principal_and_has_no_local_admin(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICAL_PIPELINES_ENV", "production")
    monkeypatch.setenv("CLINICAL_PIPELINES_MASTER_KEY", "A" * 43 + "=")
    monkeypatch.setenv("CLINICAL_PIPELINES_DEID_KEY", "B" * 43 + "=")
    nobody = site.cli("catalog", "search")
    assert nobody.exit_code == 2 and nobody.stderr.strip().startswith("error: no principal: pass --as NAME or set "
                                                                       "CLINICAL_PIPELINES_PRINCIPAL")  # fmt: skip
    assert site.cli("catalog", "search", "--as", LOCAL_ADMIN).exit_code == 3  # no local admin was created
    init = site.cli("access", "init", "--admin", "root")
    assert init.exit_code == 0 and "administrator root created" in init.stdout
    monkeypatch.setenv("CLINICAL_PIPELINES_PRINCIPAL", "root")
    assert site.cli("catalog", "show", "chest_ct").exit_code == 0
    assert site.cli("access", "grant", "ops", "--action", "read").exit_code == 0
    assert site.cli("catalog", "show", "chest_ct", "--as", "ops").exit_code == 0


NOTES_SPEC = """\
name: ward_notes
owner: clinical-nlp
purpose: Notes and labs, unlabelled.
modalities: [notes, labs]
policy_tags: [research, nlp]
retention: research-3y
"""


def test_the_training_reader_is_refused_without_a_grant_and_audited_once_with_one(site: Site) -> None:
    store = LocalObjectStore(site.data, fsync=False)
    catalog = Catalog.open(f"sqlite:///{site.data / 'catalog.sqlite'}", store_url=store.url)
    notes_id = build_version(store, spec(NOTES_SPEC), catalog=catalog).version_id
    build_training_shards(store, site.data / catalog.resolve("ward_notes").manifest_key)
    catalog.close()
    settings = Settings.from_env({"CLINICAL_PIPELINES_KEY_DIR": os.environ["CLINICAL_PIPELINES_KEY_DIR"]},
                                 data_dir=site.data)  # fmt: skip
    with pytest.raises(AccessDenied, match="mallory has no 'read' grant on project ward_notes for tag nlp"):
        open_training_dataset("ward_notes@1", "train", principal="mallory", settings=settings)
    reader = open_training_dataset(notes_id, "train", settings=settings, purpose="training", shuffle=False)
    samples = list(reader)
    assert len(samples) == len(reader) > 0
    tail = [(r.principal, r.action, r.outcome, r.purpose, r.detail) for r in site.records()[-2:]]
    assert tail == [("mallory", "read.open-reader", "refused", None, "missing read project=ward_notes tag=nlp"),
                    (LOCAL_ADMIN, "read.open-reader", "allowed", "training", "split=train")]  # fmt: skip
