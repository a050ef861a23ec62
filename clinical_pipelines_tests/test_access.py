"""Access by grant over a real catalog (SQLite and the machine's PostgreSQL): coverage by project and every policy
tag, separation of duties, grantors that cannot widen their reach, the access review, and each decision in the
hash-chained audit log exactly once."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.access import (
    ADMIN_ACTIONS,
    ANY,
    LOCAL_ADMIN,
    Access,
    AccessDenied,
    AccessError,
    Scope,
    conflict,
)
from clinical_pipelines.catalog.audit import AuditLog, Record
from clinical_pipelines.catalog.models import AccessGrant
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines_tests.test_catalog import db_url, filled  # noqa: F401  (fixtures)

Filled = tuple[Catalog, LocalObjectStore, dict[str, str]]


def _records(engine: object) -> list[Record]:
    return [Record(*row) for row in AuditLog(engine).rows()]  # type: ignore[arg-type]


def _admin(catalog: Catalog) -> Access:
    access = Access(catalog.engine)
    assert access.bootstrap() is True
    return access


def test_the_local_default_creates_one_admin_with_every_action_but_keys_once(db_url: str) -> None:  # noqa: F811
    catalog = Catalog.open(db_url)
    access = Access(catalog.engine)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(Access(catalog.engine).bootstrap())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert access.bootstrap() is False  # never again, even after its grants are gone
    grants = access.grants()
    assert {(g.principal, g.action, g.project, g.tag) for g in grants} == {
        (LOCAL_ADMIN, a, ANY, ANY) for a in ADMIN_ACTIONS
    }
    assert "keys" not in ADMIN_ACTIONS and conflict(ADMIN_ACTIONS) is None
    assert [(r.principal, r.action, r.outcome) for r in _records(catalog.engine)] == [
        ("system", "grant.bootstrap", "allowed")
    ]
    catalog.close()


def test_a_grant_covers_its_project_and_every_policy_tag_the_data_carries(filled: Filled) -> None:  # noqa: F811
    catalog, _store, ids = filled
    access = _admin(catalog)
    ct = access.version_scope(ids["ct1"])
    mr = access.version_scope(ids["mr1"])
    assert (ct.project, ct.tags) == ("chest_ct", ("imaging", "research"))
    assert (mr.project, mr.tags) == ("brain_mr", ("pretraining",))
    access.grant(LOCAL_ADMIN, "alice", ["read"], project="chest_ct", tag="research")
    assert not access.may("alice", "read", ct)  # chest_ct data is also tagged imaging
    with pytest.raises(AccessDenied, match=r"alice has no 'read' grant on project chest_ct for tag imaging .*"
                       r"--action read --project chest_ct --tag imaging\)$"):  # fmt: skip
        access.authorize("alice", "read", ct, operation="show")
    access.grant(LOCAL_ADMIN, "alice", ["read"], project="chest_ct", tag="imaging")
    access.authorize("alice", "read", ct, operation="show")
    assert not access.may("alice", "read", mr) and not access.may("alice", "reproduce", ct)
    assert access.readable("alice", "read", [ct, mr]) == [True, False]
    access.grant(LOCAL_ADMIN, "bob", ["read"], project=ANY, tag=ANY)
    assert access.readable("bob", "read", [ct, mr, Scope("anything", (), "x")]) == [True, True, True]
    assert access.who_may("read", ct) == ["alice", "bob", LOCAL_ADMIN]
    assert access.who_may("read", mr) == ["bob", LOCAL_ADMIN]
    # A version the catalog does not know is scoped by the dataset name it gives, with no tags.
    assert access.version_scope("f" * 64, "elsewhere") == Scope("elsewhere", (), f"version:{'f' * 64}")


def test_separation_of_duties_self_grants_and_bad_requests_are_refused_and_audited(filled: Filled) -> None:  # noqa: F811
    catalog, _store, _ids = filled
    access = _admin(catalog)
    with pytest.raises(AccessDenied, match="one principal cannot hold both 'promote' and 'keys'"):
        access.grant(LOCAL_ADMIN, "carol", ["promote", "keys"])
    access.grant(LOCAL_ADMIN, "carol", ["keys"])
    with pytest.raises(AccessDenied, match="carol holds 'keys', so it cannot also hold 'delete'"):
        access.grant(LOCAL_ADMIN, "carol", ["delete"], project="chest_ct")
    access.grant(LOCAL_ADMIN, "dave", ["delete"], project="brain_mr")
    with pytest.raises(AccessDenied, match="dave holds 'delete', so it cannot also hold 'keys'"):
        access.grant(LOCAL_ADMIN, "dave", ["keys"])
    with pytest.raises(AccessDenied, match="cannot grant to itself"):
        access.grant(LOCAL_ADMIN, LOCAL_ADMIN, ["read"])
    with pytest.raises(AccessError, match="unknown action"):
        access.grant(LOCAL_ADMIN, "erin", ["read", "sudo"])
    with pytest.raises(AccessError, match="principal name"):
        access.grant(LOCAL_ADMIN, "Robert'); DROP TABLE grants;--", ["read"])
    assert {g.action for g in access.grants("carol")} == {"keys"}
    assert {g.action for g in access.grants("dave")} == {"delete"}
    refused = [r for r in _records(catalog.engine) if r.outcome == "refused"]
    assert [(r.action, r.target) for r in refused] == [
        ("grant.add", "principal:carol"), ("grant.add", "principal:carol"), ("grant.add", "principal:dave"),
        ("grant.add", f"principal:{LOCAL_ADMIN}"),
    ]  # fmt: skip
    assert "conflict=keys+promote" not in refused[0].detail and "conflict=promote+keys" in refused[0].detail
    assert AuditLog(catalog.engine).verify().intact


def test_a_grantor_can_grant_only_within_its_own_grant_scope(filled: Filled) -> None:  # noqa: F811
    catalog, _store, _ids = filled
    access = _admin(catalog)
    access.grant(LOCAL_ADMIN, "lead", ["grant"], project="chest_ct", tag="research")
    access.grant("lead", "alice", ["read"], project="chest_ct", tag="research")
    for project, tag in (("chest_ct", ANY), (ANY, "research"), ("brain_mr", "research"), ("chest_ct", "imaging")):
        with pytest.raises(AccessDenied, match="lead has no 'grant' grant"):
            access.grant("lead", "alice", ["read"], project=project, tag=tag)
    with pytest.raises(AccessDenied, match="lead has no 'grant' grant"):
        access.revoke("lead", LOCAL_ADMIN, ["read"])
    assert access.revoke("lead", "alice", ["read"], project="chest_ct", tag="research") == 1
    assert access.grants("alice") == []
    with pytest.raises(AccessDenied, match="nobody has no 'grant' grant"):
        access.grant("nobody", "nobody2", ["read"])


def test_each_decision_is_audited_exactly_once_with_its_outcome(filled: Filled) -> None:  # noqa: F811
    catalog, _store, ids = filled
    access = _admin(catalog)
    scope = access.version_scope(ids["ct1"])
    before = len(_records(catalog.engine))
    with access.perform(LOCAL_ADMIN, "read", scope, operation="verify", purpose="qa") as activity:
        activity.detail = "objects=5 problems=0"
    with pytest.raises(RuntimeError), access.perform(LOCAL_ADMIN, "reproduce", scope, operation="reproduce"):
        raise RuntimeError("disk full")
    ran = []
    with pytest.raises(AccessDenied), access.perform("mallory", "read", scope, operation="verify"):
        ran.append(True)
    assert ran == []  # a refused body never runs
    records = _records(catalog.engine)[before:]
    assert {r.target for r in records} == {f"version:{ids['ct1']}"}
    assert [(r.principal, r.action, r.outcome, r.purpose, r.detail) for r in records] == [
        (LOCAL_ADMIN, "read.verify", "allowed", "qa", "objects=5 problems=0"),
        (LOCAL_ADMIN, "reproduce.reproduce", "failed", None, "error=RuntimeError"),
        ("mallory", "read.verify", "refused", None, "missing read project=chest_ct tag=imaging"),
    ]
    used = {g.action: g.last_used_at for g in access.grants(LOCAL_ADMIN)}
    assert used["read"] is not None and used["reproduce"] is None  # a failed action does not count as use
    assert "disk full" not in repr(records)  # only the error's class: messages can carry anything


def test_access_review_revokes_unused_and_closed_project_grants_but_keeps_the_last_admin(filled: Filled) -> None:  # noqa: F811
    catalog, _store, ids = filled
    access = _admin(catalog)
    access.grant(LOCAL_ADMIN, "alice", ["read"], project="chest_ct")
    access.grant(LOCAL_ADMIN, "bob", ["read"], project="brain_mr")
    access.grant(LOCAL_ADMIN, "carol", ["read", "reproduce"])
    access.authorize("carol", "read", access.version_scope(ids["ct1"]), operation="show")
    old = datetime.datetime(2020, 1, 1)
    with Session(catalog.engine) as session, session.begin():  # alice and the admin have been idle since 2020
        session.execute(update(AccessGrant).where(AccessGrant.principal.in_(["alice", LOCAL_ADMIN]))
                        .values(granted_at=old, last_used_at=None))  # fmt: skip
        session.execute(update(AccessGrant).where(AccessGrant.principal == "carol", AccessGrant.action == "reproduce")
                        .values(granted_at=old))  # fmt: skip
    access.close_project(LOCAL_ADMIN, "brain_mr")
    with pytest.raises(AccessError, match="not in the catalog"):
        access.close_project(LOCAL_ADMIN, "no_such_project")
    with pytest.raises(AccessError, match="more than 0"):
        access.review(unused_days=0)
    before = len(_records(catalog.engine))
    result = access.review(unused_days=90)
    revoked = {(r.grant.principal, r.grant.action, r.reason) for r in result if not r.kept}
    kept = {(r.grant.principal, r.grant.action) for r in result if r.kept}
    assert revoked == {("alice", "read", "unused for 90 days"), ("bob", "read", "project closed"),
                       ("carol", "reproduce", "unused for 90 days")} | {
        (LOCAL_ADMIN, a, "unused for 90 days") for a in ADMIN_ACTIONS if a != "grant"
    }  # fmt: skip
    assert kept == {(LOCAL_ADMIN, "grant")}
    left = {(g.principal, g.action) for g in access.grants()}
    assert left == {(LOCAL_ADMIN, "grant"), ("carol", "read")}
    records = _records(catalog.engine)[before:]
    assert len(records) == len(result) and {r.principal for r in records} == {"access-review"}
    assert sum(r.action == "grant.review-keep" for r in records) == 1
    assert access.review(unused_days=90) == [r for r in result if r.kept]  # nothing new: only the kept admin again
    assert AuditLog(catalog.engine).verify().intact


def test_a_project_from_the_spec_scopes_grants_and_defaults_to_the_dataset_name(tmp_path: Path) -> None:
    from clinical_pipelines.curate.build import build_version
    from clinical_pipelines_tests.test_curate_support import SPEC_TEXT, FakeDrop, Patient, spec, write_deid_drop

    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_deid_drop(store, FakeDrop("site-a", "d1", [Patient(f"PSN-ADULTCT{i:06d}", age="050Y") for i in range(3)]))
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}", store_url=store.url)
    plain = spec()
    grouped = spec(SPEC_TEXT.replace("name: chest_ct", "name: chest_ct_b") + "project: lung-program\n")
    assert plain.project_name == "chest_ct" and grouped.project_name == "lung-program"
    assert "project" not in plain.to_doc()  # a spec without one keeps the identity it had
    v1 = build_version(store, plain, catalog=catalog).version_id
    v2 = build_version(store, grouped, catalog=catalog).version_id
    access = _admin(catalog)
    assert access.version_scope(v1).project == "chest_ct" and access.version_scope(v2).project == "lung-program"
    assert catalog.show("chest_ct_b")["project"] == "lung-program"
    catalog.close()
