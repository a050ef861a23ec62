"""The whole chain through Dagster on the small corpus: landing → … → de-identified → curated versions in the
catalog; lineage metadata, data versions, automation, the CLI over the result, and no PHI in any of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.curate.manifest import load_manifest
from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.headless import HeadlessSummary, process_landing, run_curate
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.base import read_all
from clinical_pipelines_tests.corpus import files_under, find_planted, put_drops, small_corpus

BIN = Path(sys.executable).parent
DATASETS = ("brain_mr", "chest_ct_outcomes", "notes_labs")
LINEAGE_KEYS = {"manifest", "version", "version_id", "parent_drops", "previous_version", "object_count", "bytes",
                "catalog_entry", "code_version", "deid_profile", "spec_sha256", "provenance_fhir"}  # fmt: skip


@dataclass
class Chain:
    settings: Settings
    instance: dg.DagsterInstance
    summary: HeadlessSummary
    home: Path
    canaries: tuple[str, ...]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """Every drop of the small corpus through every stage, then the datasets job, once for this module."""
    tmp = tmp_path_factory.mktemp("chain")
    settings = Settings.from_env({}, data_dir=tmp / "data", key_dir=tmp / "keys")
    drops, canaries = small_corpus()
    # One source's drops (one imaging drop with a CT and an MR patient, one clinical drop): the whole chain, half
    # the time of the full corpus.
    put_drops(settings.open_store(), [d for d in drops if d.source == drops[0].source])
    home = tmp / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        summary = process_landing(settings, instance)
        yield Chain(settings, instance, summary, home, canaries)


def _cli(chain: Chain, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_PIPELINES_")}
    env["CLINICAL_PIPELINES_KEY_DIR"] = str(chain.settings.key_dir)
    env["COLUMNS"] = "200"  # rich tables at full width
    return subprocess.run(
        [str(BIN / "clinical-pipelines"), *args, "--data-dir", str(chain.settings.data_dir)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_curated_versions_are_materialized_with_lineage_and_in_the_catalog(chain: Chain) -> None:
    assert chain.summary.curated is not None and chain.summary.curated.success, chain.summary.curated
    built = {o.dataset: o for o in chain.summary.curated.datasets}
    assert set(built) == set(DATASETS) and all(o.version == 1 and o.new_version for o in built.values())
    catalog = Catalog.open(chain.settings.catalog_url)
    store = chain.settings.open_store()
    for name in DATASETS:
        record = chain.instance.get_latest_materialization_event(dg.AssetKey(["curated", name]))
        assert record is not None and record.asset_materialization is not None
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        assert set(meta) >= LINEAGE_KEYS
        manifest = load_manifest(store, name, str(meta["version_id"]))
        assert meta["manifest"] == manifest.key and meta["object_count"] == len(manifest.objects) > 0
        assert meta["parent_drops"] == manifest.doc["parents"]["drops"] and meta["bytes"] == manifest.total_bytes
        assert f"{name}@1" in str(meta["catalog_entry"])
        assert record.asset_materialization.tags["dagster/data_version"] == manifest.version_id  # type: ignore[index]
        assert catalog.resolve(name).version_id == manifest.version_id
        assert catalog.show(name)["phi_status"] == "de-identified"
        assert read_all(store, str(meta["provenance_fhir"]))
    checks = chain.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["curated", n]), "version_quality") for n in DATASETS]
    )
    assert len(checks) == 3 and all(c.status.value == "SUCCEEDED" for c in checks.values())


def test_rerun_with_nothing_changed_keeps_the_version_and_automation_follows_deid(chain: Chain) -> None:
    defs = build_definitions(chain.settings)
    before = {i.key for i in chain.settings.open_store().list("curated/")}
    again = run_curate(defs, chain.instance)
    assert again.success and all(not o.new_version and o.version == 1 for o in again.datasets)
    assert {i.key for i in chain.settings.open_store().list("curated/")} == before
    first = dg.evaluate_automation_conditions(defs=defs, instance=chain.instance)
    partition = chain.summary.drops[0].partition_key
    chain.instance.report_runless_asset_event(dg.AssetMaterialization(["deidentified", "dicom"], partition=partition))
    after = dg.evaluate_automation_conditions(defs=defs, instance=chain.instance, cursor=first.cursor)
    assert {name: after.get_num_requested(dg.AssetKey(["curated", name])) for name in DATASETS} == dict.fromkeys(
        DATASETS, 1
    )
    # ... with their training shards in the same request (one run: version, then shards)
    assert {name: after.get_num_requested(dg.AssetKey(["training", name])) for name in DATASETS} == dict.fromkeys(
        DATASETS, 1
    )
    sensor = defs.resolve_sensor_def("datasets_automation")  # nobody has to switch it on
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_cli_verify_reproduce_register_search_show(chain: Chain, tmp_path: Path) -> None:
    listed = json.loads(_cli(chain, "catalog", "search", "--modality", "CT", "--labelled", "--json").stdout)
    assert [r["dataset"] for r in listed] == ["chest_ct_outcomes"]
    version_id = listed[0]["version_id"]
    ok = _cli(chain, "manifest", "verify", version_id)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    repro = _cli(chain, "reproduce", "chest_ct_outcomes@1", "--to", str(tmp_path / "out"))
    assert repro.returncode == 0 and "re-verified: OK" in repro.stdout, repro.stderr
    local = tmp_path / "out" / "manifest.json"
    assert _cli(chain, "manifest", "verify", str(local)).returncode == 0
    reg = _cli(chain, "runs", "register", "--manifest", str(local), "--run-id", "mlflow-123", "--model", "cnn")
    assert reg.returncode == 0, reg.stderr
    shown = json.loads(_cli(chain, "catalog", "show", "chest_ct_outcomes@1", "--json").stdout)
    assert shown["training_runs"][0]["run_id"] == "mlflow-123" and "training_run:mlflow-123" in shown["lineage"]["to"]
    table = _cli(chain, "catalog", "show", "chest_ct_outcomes")
    assert table.returncode == 0 and "imaging-research" in table.stdout and "mlflow-123" in table.stdout
    assert "chest_ct_outcomes" in _cli(chain, "catalog", "search").stdout
    prov = json.loads(_cli(chain, "manifest", "provenance", version_id).stdout)
    assert prov["resourceType"] == "Provenance" and prov["target"][0]["identifier"]["value"] == version_id
    # Damage one object: verify names it and fails.
    row = json.loads(local.read_bytes())["objects"][0]
    path = chain.settings.data_dir / row["key"]
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        bad = _cli(chain, "manifest", "verify", "chest_ct_outcomes@1")
        assert bad.returncode == 1 and f"SHA256 MISMATCH: {row['key']}" in bad.stdout
    finally:
        path.write_bytes(original)
    missing = _cli(chain, "manifest", "verify", "no_such_dataset")
    assert missing.returncode == 1 and "not in the catalog" in missing.stderr


def test_no_phi_in_manifests_catalog_provenance_or_dagster_storage(chain: Chain) -> None:
    curated = chain.settings.data_dir / "curated"
    blobs = [
        *files_under(curated / "manifests"),
        *files_under(curated / "provenance"),
        *files_under(curated / "versions"),
        (str(chain.settings.data_dir / "catalog.sqlite"), (chain.settings.data_dir / "catalog.sqlite").read_bytes()),
    ]
    assert len(blobs) > 6
    assert find_planted(blobs, chain.canaries) == []
    for name in DATASETS:  # the objects a version names are de-identified too
        manifest_files = list((curated / "manifests" / name).glob("*.json"))
        for row in json.loads(manifest_files[0].read_bytes())["objects"]:
            data = (chain.settings.data_dir / row["key"]).read_bytes()
            assert find_planted([(row["key"], data)], chain.canaries) == []
    assert find_planted(files_under(chain.home), chain.canaries) == []


def test_curated_assets_follow_the_configured_specs_folder(tmp_path: Path) -> None:
    from clinical_pipelines.curate.spec import SpecError
    from clinical_pipelines_tests.test_curate_support import SPEC_TEXT

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "chest.yaml").write_text(SPEC_TEXT)
    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys", specs_dir=specs)
    keys = build_definitions(settings).resolve_asset_graph().get_all_asset_keys()
    assert {k.path[-1] for k in keys if k.path[0] == "curated"} == {"chest_ct"}
    (specs / "broken.yaml").write_text(SPEC_TEXT.replace("retention:", "retension:"))
    with pytest.raises(SpecError, match=r"broken\.yaml:21: unknown field 'retension'"):
        build_definitions(settings)


def test_each_new_version_is_promoted_once_in_the_audit_log_and_its_metadata_shows_governance(chain: Chain) -> None:
    from sqlalchemy import text

    from clinical_pipelines.catalog.audit import AuditLog

    catalog = Catalog.open(chain.settings.catalog_url)
    try:
        with catalog.engine.connect() as conn:
            versions = {row[0] for row in conn.execute(text("SELECT id FROM versions"))}
        log = AuditLog(catalog.engine)
        promoted = [row for row in log.rows() if row[3] == "promote.build-version"]
        assert log.verify().intact
    finally:
        catalog.close()
    assert versions and sorted(r[4] for r in promoted) == sorted(f"version:{v}" for v in versions)
    assert {r[2] for r in promoted} <= {"pipeline:datasets", "pipeline:__ASSET_JOB"}
    assert all(r[6] == "allowed" and " run=" in r[7] for r in promoted)
    event = chain.instance.get_latest_materialization_event(dg.AssetKey(["curated", "chest_ct_outcomes"]))
    assert event is not None and event.asset_materialization is not None
    meta = event.asset_materialization.metadata
    assert meta["owner"].value == "imaging-research" and meta["retention"].value and meta["project"].value
