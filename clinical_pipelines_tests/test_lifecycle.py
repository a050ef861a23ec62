"""Lifecycle states of curated versions over a real catalog and store (local folder; moto's S3 for the archive's
storage class): legal moves only, frozen and archived with a verified archive copy, archived without training
shards, expiry refused under a legal hold, grants checked and each move audited once."""

from __future__ import annotations

import json

import boto3
import pytest

from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.curate.build import build_version
from clinical_pipelines.curate.lifecycle import archive_key, archive_version
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.s3 import S3ObjectStore
from clinical_pipelines.training import build_training_shards
from clinical_pipelines_tests.conftest import make_bucket
from clinical_pipelines_tests.test_access_cli import NOTES_SPEC, Site, site  # noqa: F401  (fixture)
from clinical_pipelines_tests.test_curate_support import FakeDrop, Patient, spec, write_deid_drop


def _notes_version(site: Site) -> tuple[LocalObjectStore, str]:  # noqa: F811
    store = LocalObjectStore(site.data, fsync=False)
    catalog = Catalog.open(f"sqlite:///{site.data / 'catalog.sqlite'}", store_url=store.url)
    version_id = build_version(store, spec(NOTES_SPEC), catalog=catalog).version_id
    build_training_shards(store, site.data / catalog.resolve("ward_notes").manifest_key)
    catalog.close()
    return store, version_id


def _training_asset_again(site: Site, version_id: str) -> dict[str, object]:  # noqa: F811
    """The training asset materialized once more after the curated asset reported ``version_id``."""
    import dagster as dg

    from clinical_pipelines.defs.curate.assets import curated_key
    from clinical_pipelines.defs.resources import CatalogResource, ObjectStoreResource, TrainingResource
    from clinical_pipelines.defs.training.assets import training_asset
    from clinical_pipelines.zones import curated_manifest_key

    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=curated_key("ward_notes"), metadata={
            "manifest": dg.MetadataValue.path(curated_manifest_key("ward_notes", version_id)),
            "version_id": dg.MetadataValue.text(version_id)}))  # fmt: skip
        result = dg.materialize([training_asset("ward_notes")], instance=instance, resources={
            "object_store": ObjectStoreResource(url=str(site.data)),
            "training": TrainingResource(cache_dir=str(site.data / ".cache"), shard_mb=1),
            "catalog": CatalogResource(url=f"sqlite:///{site.data / 'catalog.sqlite'}"),
        })  # fmt: skip
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}


def test_moves_follow_the_state_machine_with_archive_copies_holds_and_audit(site: Site) -> None:  # noqa: F811
    store, version_id = _notes_version(site)
    training = site.data / "training" / "ward_notes" / version_id
    assert any(training.iterdir())
    state = json.loads(site.cli("catalog", "show", "ward_notes", "--json").stdout)["lifecycle"]
    assert state == {"state": "warm", "changed_at": None, "reason": None}  # a recorded version starts warm
    refused = site.cli("lifecycle", "set", "ward_notes@1", "frozen", "--reason", "release-candidate", "--as", "mallory")
    assert refused.exit_code == 3 and "mallory has no 'promote' grant" in refused.stderr
    free_text = site.cli("lifecycle", "set", "ward_notes@1", "frozen", "--reason", "asked by Dr Smith")
    assert free_text.exit_code == 1 and "a reason is a code" in free_text.stderr

    frozen = site.cli("lifecycle", "set", "ward_notes@1", "frozen", "--reason", "release-candidate")
    assert frozen.exit_code == 0 and "warm -> frozen" in frozen.stdout and "verified in archive/" in frozen.stdout
    manifest = json.loads((site.data / "archive" / "curated" / "manifests" / "ward_notes" / f"{version_id}.json")
                          .read_bytes())  # fmt: skip
    for row in manifest["objects"]:  # every object copied byte for byte
        assert read_all(store, archive_key(row["key"])) == read_all(store, row["key"])
    back = site.cli("lifecycle", "set", "ward_notes@1", "warm", "--reason", "more-experiments")
    assert back.exit_code == 1 and "is frozen: it can move to archived, not warm" in back.stderr

    archived = site.cli("lifecycle", "set", "ward_notes@1", "archived", "--reason", "study-closed")
    assert archived.exit_code == 0 and "training object(s) removed" in archived.stdout
    assert not any(p.is_file() for p in training.rglob("*"))  # shards and index gone
    assert _training_asset_again(site, version_id)["skipped"] == "version is archived"
    import os

    from clinical_pipelines.curate.lifecycle import LifecycleError
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.training.governed import open_training_dataset

    settings = Settings.from_env({"CLINICAL_PIPELINES_KEY_DIR": os.environ["CLINICAL_PIPELINES_KEY_DIR"]},
                                 data_dir=site.data)  # fmt: skip
    with pytest.raises(LifecycleError, match="ward_notes@1 is archived: its training shards were removed"):
        open_training_dataset("ward_notes@1", "train", settings=settings)
    assert not any(p.is_file() for p in training.rglob("*"))  # and the training asset does not bring them back
    assert site.cli("manifest", "verify", "ward_notes@1").exit_code == 0  # the curated copy is still whole

    assert site.cli("hold", "add", "ward_notes", "--case", "LIT-9").exit_code == 0
    held = site.cli("lifecycle", "set", "ward_notes@1", "expired", "--reason", "retention-over")
    assert held.exit_code == 1 and "under legal hold (LIT-9): it cannot expire" in held.stderr
    assert site.cli("hold", "remove", "ward_notes", "--case", "LIT-9").exit_code == 0
    expired = site.cli("lifecycle", "set", "ward_notes@1", "expired", "--reason", "retention-over")
    assert expired.exit_code == 0 and "archived -> expired" in expired.stdout
    final = site.cli("lifecycle", "set", "ward_notes@1", "warm", "--reason", "undo")
    assert final.exit_code == 1 and "it can move to nothing" in final.stderr
    state = json.loads(site.cli("catalog", "show", "ward_notes", "--json").stdout)["lifecycle"]
    assert state["state"] == "expired" and state["reason"] == "retention-over" and state["changed_at"]
    moves = [(r.principal, r.action, r.outcome) for r in site.records() if ".lifecycle-" in r.action]
    assert moves == [("mallory", "promote.lifecycle-frozen", "refused"),
                     ("local-admin", "promote.lifecycle-frozen", "allowed"),
                     ("local-admin", "delete.lifecycle-archived", "allowed"),
                     ("local-admin", "delete.lifecycle-expired", "allowed")]  # fmt: skip


def test_a_damaged_object_stops_the_freeze_and_the_state_stays(site: Site) -> None:  # noqa: F811
    store, version_id = _notes_version(site)
    manifest = json.loads(read_all(store, f"curated/manifests/ward_notes/{version_id}.json"))
    victim = site.data / manifest["objects"][0]["key"]
    original = victim.read_bytes()
    victim.write_bytes(original + b"!")
    failed = site.cli("lifecycle", "set", "ward_notes@1", "frozen", "--reason", "release-candidate")
    assert failed.exit_code == 1 and "archive copy of ward_notes@1 does not verify" in failed.stderr
    assert json.loads(site.cli("catalog", "show", "ward_notes", "--json").stdout)["lifecycle"]["state"] == "warm"
    assert not (site.data / "archive" / "curated" / "manifests").exists()  # no manifest for a bad copy
    failures = [r for r in site.records() if r.action == "promote.lifecycle-frozen"]
    assert [(r.outcome, r.detail) for r in failures] == [("failed", "error=LifecycleError")]
    victim.write_bytes(original)  # repaired: the bad archive copy was dropped, so the next freeze copies it again
    again = site.cli("lifecycle", "set", "ward_notes@1", "frozen", "--reason", "release-candidate")
    assert again.exit_code == 0, again.output
    assert read_all(store, archive_key(manifest["objects"][0]["key"])) == original


def test_the_archive_zone_is_written_in_a_cold_storage_class_on_s3(s3_endpoint: str, tmp_path: object) -> None:
    bucket = make_bucket(s3_endpoint)
    store = S3ObjectStore(bucket, "zones", endpoint_url=s3_endpoint, region_name="us-east-1")
    write_deid_drop(store, FakeDrop("site-a", "d1", [Patient("PSN-ADULTCT000001", age="050Y")]))
    from clinical_pipelines.curate.manifest import load_manifest

    built = build_version(store, spec(NOTES_SPEC))
    manifest = load_manifest(store, "ward_notes", built.version_id)
    assert archive_version(store, manifest).ok
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    row = manifest.objects[0]
    cold = client.head_object(Bucket=bucket, Key=f"zones/{archive_key(row['key'])}")
    hot = client.head_object(Bucket=bucket, Key=f"zones/{row['key']}")
    assert cold.get("StorageClass") == "GLACIER_IR" and hot.get("StorageClass", "STANDARD") == "STANDARD"
