"""The catalog on SQLite and on the machine's PostgreSQL: migrations, versions, search, show, runs, concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from clinical_pipelines.catalog.db import VERSION_TABLE, current_revision, head_revision, make_engine, migrate
from clinical_pipelines.catalog.models import Base
from clinical_pipelines.catalog.repository import Catalog, CatalogError
from clinical_pipelines.catalog.search import SearchFilters, search
from clinical_pipelines.curate.build import build_version
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines_tests.conftest import PG
from clinical_pipelines_tests.test_curate_support import (
    SPEC_TEXT,
    FakeDrop,
    Patient,
    spec,
    write_deid_drop,
)

TABLES = {
    "owners", "retention_classes", "policy_tags", "dataset_policy_tags", "datasets", "versions", "version_facets",
    "object_summaries", "quality_results", "lineage_edges", "training_runs", "training_run_versions", "audit_log",
    "principals", "projects", "grants", "version_tags", "legal_holds",
}  # fmt: skip

MR_SPEC = """\
name: brain_mr
owner: neuro-imaging
purpose: Brain MR, unlabelled, for pre-training.
modalities: [dicom, notes]
cohort: {imaging_modality: [MR]}
policy_tags: [pretraining]
retention: research-3y
"""


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def filled(db_url: str, tmp_path: Path) -> tuple[Catalog, LocalObjectStore, dict[str, str]]:
    """A catalog with chest_ct (two versions) and brain_mr (one) built from fake de-identified drops."""
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_deid_drop(
        store, FakeDrop("site-a", "d1", [Patient(f"PSN-ADULTCT{i:06d}", age=f"0{40 + i}Y") for i in range(4)])
    )
    write_deid_drop(store, FakeDrop("site-b", "d1", [Patient("PSN-BRAINMR000001", modality="MR", body_part="HEAD",
                                                             age="070Y", study_date="20230601")]))  # fmt: skip
    catalog = Catalog.open(db_url, store_url=store.url)
    ids = {
        "ct1": build_version(store, spec(), catalog=catalog).version_id,
        "ct2": build_version(store, spec(SPEC_TEXT.replace("seed: 7", "seed: 3")), catalog=catalog).version_id,
        "mr1": build_version(store, spec(MR_SPEC), catalog=catalog).version_id,
    }
    return catalog, store, ids


def test_migrations_create_every_table_and_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], diff  # a model change without a migration fails here
    migrate(engine)  # idempotent
    engine.dispose()


def test_a_catalog_migrated_into_alembic_version_by_an_older_release_is_moved_to_its_own_table(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:  # the layout an older release left: the revision in Alembic's default table
        conn.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": head_revision()})
    assert current_revision(engine) is None
    Catalog.open(db_url).close()  # must not try to create the existing tables again
    assert current_revision(engine) == head_revision()
    assert "alembic_version" not in inspect(engine).get_table_names()  # it held only ours
    engine.dispose()


@pytest.mark.postgres
def test_the_catalog_shares_a_database_with_dagster_storage(pg_database: str, pg_url: str, tmp_path: Path) -> None:
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n"
        f"      hostname: {PG['host']}\n      username: {PG['user']}\n      password: ''\n"
        f"      db_name: {pg_database}\n      scheme: postgresql+psycopg2\n"
    )
    with dg.DagsterInstance.from_config(str(home)):
        pass  # creates Dagster's tables and its alembic_version row
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        dagster_revisions = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    assert dagster_revisions and head_revision() not in dagster_revisions
    Catalog.open(pg_url).close()
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:  # Dagster's revision untouched
        assert [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))] == dagster_revisions
    with dg.DagsterInstance.from_config(str(home)) as instance:  # and Dagster still opens on it
        assert instance.get_runs() == []
    engine.dispose()


def test_concurrent_openers_migrate_once(db_url: str) -> None:
    errors: list[Exception] = []

    def open_one() -> None:
        try:
            Catalog.open(db_url).close()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(make_engine(db_url)) == head_revision()


def test_versions_governance_quality_and_lineage_are_recorded(filled: tuple[Catalog, LocalObjectStore, dict]) -> None:
    catalog, _, ids = filled
    info = catalog.show("chest_ct")
    assert (info["version"], info["version_id"], info["previous"]) == (2, ids["ct2"], ids["ct1"])
    assert info["owner"] == "imaging-research" and info["purpose"].startswith("Chest CT")
    assert info["policy_tags"] == ["imaging", "research"] and info["retention"] == "research-7y"
    assert info["phi_status"] == "de-identified" and info["deid"]["version"] == "2024b"
    assert info["objects"] == 12 and info["patients"] == 4 and info["labelled_patients"] == 4
    assert {q["name"] for q in info["quality"]} >= {"objects_present", "patient_level_split", "pseudonymous_ids_only"}
    assert all(q["passed"] for q in info["quality"] if q["severity"] == "error")
    assert info["lineage"]["from"] == ["drop:site-a/d1", f"version:{ids['ct1']}"]
    assert sum(s["objects"] for s in info["summary"]) == 12
    assert catalog.show("chest_ct", "1")["lineage"]["to"] == [f"version:{ids['ct2']}"]
    assert catalog.show("chest_ct", ids["ct1"][:10])["version"] == 1
    with pytest.raises(CatalogError, match="no version 7"):
        catalog.show("chest_ct", "7")
    with pytest.raises(CatalogError, match="not in the catalog"):
        catalog.show("nope")


def test_recording_again_is_idempotent(filled: tuple[Catalog, LocalObjectStore, dict]) -> None:
    catalog, store, ids = filled
    again = build_version(store, spec(MR_SPEC), catalog=catalog)
    assert not again.created and again.version_id == ids["mr1"]
    assert [r["version"] for r in search(catalog, SearchFilters(text="brain", all_versions=True))] == [1]


def test_training_runs_are_registered_once_and_shown(filled: tuple[Catalog, LocalObjectStore, dict]) -> None:
    catalog, _, ids = filled
    catalog.register_run("run-1", ids["ct1"], model="resnet50")
    catalog.register_run("run-1", ids["ct1"])  # idempotent
    catalog.register_run("run-2", ids["ct1"])
    shown = catalog.show("chest_ct", "1")
    assert [(r["run_id"], r["model"]) for r in shown["training_runs"]] == [("run-1", "resnet50"), ("run-2", None)]
    assert "training_run:run-1" in shown["lineage"]["to"]
    assert catalog.show("chest_ct")["training_runs"] == []
    with pytest.raises(CatalogError):
        catalog.register_run("run-3", "0" * 64)


SEARCHES = [
    (SearchFilters(), ["brain_mr@1", "chest_ct@2"]),
    (SearchFilters(all_versions=True), ["brain_mr@1", "chest_ct@1", "chest_ct@2"]),
    (SearchFilters(modality="ct"), ["chest_ct@2"]),
    (SearchFilters(modality="notes"), ["brain_mr@1"]),
    (SearchFilters(modality="outcomes"), ["chest_ct@2"]),
    (SearchFilters(body_part="head"), ["brain_mr@1"]),
    (SearchFilters(age_min=65), ["brain_mr@1"]),
    (SearchFilters(age_min=18, age_max=41), ["chest_ct@2"]),
    (SearchFilters(date_from="20230101"), ["brain_mr@1"]),
    (SearchFilters(date_to="20221231"), ["chest_ct@2"]),
    (SearchFilters(labelled=True), ["chest_ct@2"]),
    (SearchFilters(labelled=False), ["brain_mr@1"]),
    (SearchFilters(phi_status="de-identified"), ["brain_mr@1", "chest_ct@2"]),
    (SearchFilters(phi_status="identified"), []),
    (SearchFilters(policy_tag="PRETRAINING"), ["brain_mr@1"]),
    (SearchFilters(owner="imaging-research"), ["chest_ct@2"]),
    (SearchFilters(owner="imaging-research", body_part="head"), []),
]


def test_search_filters(filled: tuple[Catalog, LocalObjectStore, dict]) -> None:
    found = {str(f): [f"{r['dataset']}@{r['version']}" for r in search(filled[0], f)] for f, _ in SEARCHES}
    assert found == {str(f): expected for f, expected in SEARCHES}
    row = search(filled[0], SearchFilters(modality="CT"))[0]
    assert row["imaging_modalities"] == ["CT"] and row["body_parts"] == ["CHEST"] and row["ages"] == [40, 43]
    assert row["study_dates"] == ["20220315", "20220315"] and row["policy_tags"] == ["imaging", "research"]


def test_concurrent_recording_of_one_version_gives_one_row(db_url: str, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    write_deid_drop(store, FakeDrop("site-a", "d1", [Patient(f"PSN-ADULTCT{i:06d}") for i in range(3)]))
    manifest = build_version(store, spec()).manifest
    catalogs = [Catalog.open(db_url) for _ in range(3)]
    barrier = threading.Barrier(3)
    errors: list[Exception] = []

    def record(catalog: Catalog) -> None:
        try:
            barrier.wait()
            catalog.record_version(spec(), manifest, [])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r["version_id"] for r in search(catalogs[0], SearchFilters(all_versions=True))] == [manifest.version_id]
