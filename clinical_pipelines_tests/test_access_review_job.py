"""The scheduled access review through Dagster (a real instance, in process): stale grants and grants on closed
projects revoked, the last administrator kept, what happened in the asset's metadata and the audit log."""

from __future__ import annotations

import datetime
from pathlib import Path

import dagster as dg
from sqlalchemy import update
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.access import LOCAL_ADMIN, Access
from clinical_pipelines.catalog.audit import AuditLog
from clinical_pipelines.catalog.models import AccessGrant, Project
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.settings import Settings


def test_the_access_review_job_revokes_and_reports(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    catalog = Catalog.open(settings.catalog_url)
    access = Access(catalog.engine)
    access.bootstrap()
    with Session(catalog.engine) as session, session.begin():
        session.add(Project(name="closed_study"))
    access.grant(LOCAL_ADMIN, "alice", ["read"], project="closed_study")
    access.grant(LOCAL_ADMIN, "bob", ["read"], project="other_study")
    access.grant(LOCAL_ADMIN, "carol", ["read"])
    access.close_project(LOCAL_ADMIN, "closed_study")
    with Session(catalog.engine) as session, session.begin():
        session.execute(update(AccessGrant).where(AccessGrant.principal == "bob")
                        .values(granted_at=datetime.datetime(2021, 5, 1)))  # fmt: skip

    defs = build_definitions(settings)
    schedule = next(s for s in defs.get_repository_def().schedule_defs if s.name == "access_review_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == "access_review"
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = defs.resolve_job_def("access_review").execute_in_process(
            instance=instance, run_config={"ops": {"governance__access_review": {"config": {"unused_days": 30}}}}
        )
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey(["governance", "access_review"]))
        assert event is not None and event.asset_materialization is not None
        meta = event.asset_materialization.metadata
    assert meta["revoked"].value == 2 and meta["kept"].value == 0 and meta["unused_days"].value == 30
    table = meta["grants"].value
    assert "| alice | read | closed_study | * |" in table and "project closed" in table
    assert "| bob | read | other_study | * |" in table and "unused for 30 days" in table
    assert {g.principal for g in access.grants()} == {LOCAL_ADMIN, "carol"}
    records = [r for r in (AuditLog(catalog.engine).rows()) if r[2] == "access-review"]
    assert sorted(r[4] for r in records) == ["principal:alice", "principal:bob"]
    catalog.close()
