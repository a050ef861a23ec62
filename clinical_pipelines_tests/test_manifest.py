"""Curated versions on both stores: selection, canonical manifests, write-once, idempotent rebuilds, verify,
reproduce, crash recovery and concurrent builds."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.curate.build import NothingToBuild, build_version
from clinical_pipelines.curate.canonical import NotCanonical, canonical_bytes
from clinical_pipelines.curate.manifest import (
    ManifestError,
    find_manifest,
    latest_claim,
    latest_manifest,
    load_manifest,
    read_manifest_file,
)
from clinical_pipelines.curate.provenance import provenance_resource
from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.curate.splits import assign_split
from clinical_pipelines.curate.verify import reproduce, verify_manifest
from clinical_pipelines.storage import ObjectAlreadyExists, ObjectInfo, ObjectStore
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.zones import curated_manifest_key, curated_object_key
from clinical_pipelines_tests.test_curate_support import (
    SPEC_TEXT,
    FakeDrop,
    Patient,
    spec,
    standard_drops,
    write_deid_drop,
)


def _keys(store: ObjectStore, prefix: str = "curated/") -> set[str]:
    return {i.key for i in store.list(prefix)}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}", store_url="test-store")


def _populate(store: ObjectStore) -> list[FakeDrop]:
    drops = standard_drops()
    for drop in drops:
        write_deid_drop(store, drop)
    return drops


def test_canonical_json_refuses_floats_and_sorts_keys() -> None:
    assert canonical_bytes({"b": 1, "a": ["x", None, True]}) == b'{"a":["x",null,true],"b":1}'
    assert canonical_bytes({"é": "ü"}) == '{"é":"ü"}'.encode()
    with pytest.raises(NotCanonical, match=r"float at \$\.split\.ratios\.train"):
        canonical_bytes({"split": {"ratios": {"train": 0.8}}})


def test_build_selects_the_cohort_and_writes_a_canonical_manifest(store: ObjectStore, catalog: Catalog) -> None:
    _populate(store)
    the_spec = spec()
    result = build_version(store, the_spec, catalog=catalog, code_version="test+1")
    manifest = result.manifest
    assert result.created and manifest.number == 1
    raw = read_all(store, curated_manifest_key("chest_ct", manifest.version_id))
    assert hashlib.sha256(raw).hexdigest() == manifest.version_id
    assert canonical_bytes(json.loads(raw)) == raw and b'"train":"0.6"' in raw
    doc = manifest.doc
    assert doc["schema"] == "clinical-pipelines.manifest/1" and doc["dataset"] == "chest_ct"
    assert doc["parents"] == {"drops": ["site-a/d1", "site-b/d1"], "previous": None}
    assert doc["spec_sha256"] == the_spec.sha256 and doc["code_version"] == "test+1"
    assert doc["deid"]["version"] == "2024b" and doc["deid"]["options"] == sorted(doc["deid"]["options"])
    assert doc["split"] == {"seed": 7, "ratios": {"test": "0.2", "train": "0.6", "val": "0.2"}}
    patients = {o["patient_id"] for o in doc["objects"]}
    assert patients == {f"PSN-OKPATIENT{i:04d}" for i in range(6)}  # every other patient fails one criterion
    assert {o["modality"] for o in doc["objects"]} == {"dicom", "outcomes"}
    assert len(doc["objects"]) == 6 * 2 + 6  # two CT series each, one outcomes slice each
    assert [(o["patient_id"], o["key"]) for o in doc["objects"]] == sorted(
        (o["patient_id"], o["key"]) for o in doc["objects"]
    )
    for row in doc["objects"]:
        assert row["key"] == curated_object_key(row["sha256"]) and isinstance(row["size"], int)
        assert row["split"] == assign_split(row["patient_id"], {"test": "0.2", "train": "0.6", "val": "0.2"}, 7)
        assert set(row["attributes"]) >= {"drop"} and all(isinstance(v, str) for v in row["attributes"].values())
        data = read_all(store, row["key"])
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["size"]
        if row["modality"] == "outcomes":  # a per-patient slice of a many-patient table
            lines = data.decode().splitlines()
            assert lines[0].startswith("patient_id,") and len(lines) == 2 and lines[1].startswith(row["patient_id"])
    labels = {o["patient_id"]: o["label"] for o in doc["objects"]}
    assert labels["PSN-OKPATIENT0000"] == "deceased" and labels["PSN-OKPATIENT0001"] == "readmitted"
    assert labels["PSN-OKPATIENT0002"] == "other"
    assert [q.name for q in result.quality if not q.passed] in ([], ["splits_populated"])
    assert latest_manifest(store, "chest_ct") == manifest and find_manifest(store, manifest.version_id) == manifest
    assert verify_manifest(store, manifest).ok  # through the store's own reads (threads; HTTP on S3)


def test_rebuild_with_nothing_changed_is_the_same_version_and_writes_nothing(
    store: ObjectStore, catalog: Catalog
) -> None:
    _populate(store)
    first = build_version(store, spec(), catalog=catalog, code_version="a")
    before = _keys(store)
    again = build_version(store, spec("# reformatted\n" + SPEC_TEXT), catalog=catalog, code_version="b")
    assert not again.created and again.version_id == first.version_id and again.objects_written == 0
    assert _keys(store) == before
    assert latest_claim(store, "chest_ct") == (1, first.version_id)


def test_changed_spec_or_new_drop_makes_a_new_version_linked_to_the_previous(
    local_store: LocalObjectStore, catalog: Catalog
) -> None:
    _populate(local_store)
    v1 = build_version(local_store, spec(), catalog=catalog)
    v2 = build_version(local_store, spec(SPEC_TEXT.replace("seed: 7", "seed: 8")), catalog=catalog)
    assert (v2.number, v2.manifest.doc["parents"]["previous"]) == (2, v1.version_id) and v2.created
    write_deid_drop(local_store, FakeDrop("site-c", "d9", [Patient("PSN-NEWPATIENT0001")]))
    v3 = build_version(local_store, spec(SPEC_TEXT.replace("seed: 7", "seed: 8")), catalog=catalog)
    assert v3.number == 3 and "site-c/d9" in v3.manifest.doc["parents"]["drops"]
    assert load_manifest(local_store, "chest_ct", v1.version_id).number == 1  # old versions stay readable
    shown = catalog.show("chest_ct", "2")
    assert (
        shown["version_id"] == v2.version_id
        and f"version:{v2.version_id}" in catalog.show("chest_ct")["lineage"]["from"]
    )


def test_failed_drops_and_patientless_items_are_left_out(local_store: LocalObjectStore, catalog: Catalog) -> None:
    _populate(local_store)
    write_deid_drop(local_store, FakeDrop("site-x", "bad", [Patient("PSN-BLOCKEDBYSCAN1")], passed=False))
    doc = build_version(local_store, spec(), catalog=catalog).manifest.doc
    assert "site-x/bad" not in doc["parents"]["drops"]
    assert "PSN-BLOCKEDBYSCAN1" not in {o["patient_id"] for o in doc["objects"]}
    empty = spec(SPEC_TEXT.replace("body_part: [CHEST]", "body_part: [KNEE]"))
    with pytest.raises(NothingToBuild, match="chest_ct"):
        build_version(local_store, empty, catalog=catalog)


def test_manifest_is_write_once_and_tampering_is_detected(store: ObjectStore, tmp_path: Path) -> None:
    _populate(store)
    manifest = build_version(store, spec()).manifest
    with pytest.raises(ObjectAlreadyExists):
        store.put_bytes(manifest.key, b"{}", write_once=True)
    assert read_all(store, manifest.key) == manifest.data
    altered = manifest.data.replace(b'"version":1', b'"version":2')
    store.put_bytes(manifest.key, altered)  # an overwrite around the platform (not write-once)
    with pytest.raises(ManifestError, match="altered"):
        load_manifest(store, "chest_ct", manifest.version_id)
    local = tmp_path / "m.json"
    local.write_bytes(json.dumps(manifest.doc, indent=1).encode())
    with pytest.raises(ManifestError, match="not in canonical form"):
        read_manifest_file(local)


def test_verify_reports_missing_and_altered_objects_by_path(local_store: LocalObjectStore) -> None:
    _populate(local_store)
    manifest = build_version(local_store, spec()).manifest
    assert verify_manifest(local_store, manifest, workers=3).ok
    rows = manifest.objects
    local_store.delete(rows[0]["key"])
    local_store.put_bytes(rows[1]["key"], b"x" * rows[1]["size"])
    local_store.put_bytes(rows[2]["key"], b"short")
    report = verify_manifest(local_store, manifest)
    assert {(p.key, p.reason) for p in report.problems} == {
        (rows[0]["key"], "missing"),
        (rows[1]["key"], "sha256 mismatch"),
        (rows[2]["key"], "size mismatch"),
    }
    assert report.objects == len(rows)


def test_reproduce_materialises_the_exact_bytes(local_store: LocalObjectStore, tmp_path: Path) -> None:
    _populate(local_store)
    manifest = build_version(local_store, spec()).manifest
    out = tmp_path / "repro"
    report = reproduce(local_store, manifest, out)
    assert report.ok and report.written == len(manifest.objects)
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert len(files) == len(manifest.objects)
    assert (out / "manifest.json").read_bytes() == manifest.data
    for row in manifest.objects:
        path = out / row["split"] / row["modality"] / row["patient_id"]
        data = next(path.glob(row["sha256"] + ".*")).read_bytes()
        assert data == read_all(local_store, row["key"])
    local_store.put_bytes(manifest.objects[0]["key"], b"tampered")
    bad = reproduce(local_store, manifest, tmp_path / "repro2")
    assert not bad.ok and [p.key for p in bad.problems] == [manifest.objects[0]["key"]]


def test_fhir_provenance_of_a_version(local_store: LocalObjectStore) -> None:
    _populate(local_store)
    v1 = build_version(local_store, spec()).manifest
    v2 = build_version(local_store, spec(SPEC_TEXT.replace("seed: 7", "seed: 9"))).manifest
    resource = provenance_resource(v2)
    assert resource["resourceType"] == "Provenance" and resource["id"] == v2.version_id
    assert resource["target"][0]["identifier"]["value"] == v2.version_id
    assert resource["recorded"].endswith("Z")
    entities = {(e["role"], e["what"]["identifier"]["value"]) for e in resource["entity"]}
    assert entities == {("source", "site-a/d1"), ("source", "site-b/d1"), ("revision", v1.version_id)}
    assert resource["agent"][0]["who"]["identifier"]["value"] == v2.doc["code_version"]
    stored = json.loads(read_all(local_store, f"curated/provenance/chest_ct/{v2.version_id}.json"))
    assert stored["entity"] == resource["entity"]


class CrashingStore:
    """A real local_store that dies (like a killed process) when asked to write a key under ``crash_on``."""

    def __init__(self, inner: ObjectStore, crash_on: str) -> None:
        self.inner, self.crash_on, self.url = inner, crash_on, inner.url

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        if key.startswith(self.crash_on):
            raise SystemExit(f"simulated crash before writing {key}")
        return self.inner.put_bytes(key, data, write_once=write_once)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.mark.parametrize("crash_on", ["curated/objects/", "curated/manifests/", "curated/versions/"])
def test_a_crash_mid_build_leaves_nothing_pointing_at_missing_objects(
    local_store: LocalObjectStore, catalog: Catalog, crash_on: str
) -> None:
    _populate(local_store)
    with pytest.raises(SystemExit):
        build_version(CrashingStore(local_store, crash_on), spec(), catalog=catalog)  # type: ignore[arg-type]
    assert latest_claim(local_store, "chest_ct") is None and catalog.latest_version("chest_ct") is None
    for key in _keys(local_store, "curated/manifests/"):  # a manifest may exist, but only over complete objects
        doc = json.loads(read_all(local_store, key))
        assert all(local_store.head(o["key"]) is not None for o in doc["objects"])
    done = build_version(local_store, spec(), catalog=catalog)  # the re-run completes it
    assert done.number == 1 and verify_manifest(local_store, done.manifest).ok
    assert catalog.resolve("chest_ct").version_id == done.version_id


def test_two_concurrent_builds_of_one_spec_yield_one_version(store: ObjectStore, catalog: Catalog) -> None:
    _populate(store)
    barrier = threading.Barrier(3)
    results, errors = [], []

    def run() -> None:
        try:
            barrier.wait()
            results.append(build_version(store, spec(), catalog=catalog))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len({r.version_id for r in results}) == 1
    assert len(_keys(store, "curated/manifests/")) == 1 and len(_keys(store, "curated/versions/")) == 1
    assert catalog.show("chest_ct")["version"] == 1
    assert [r["version"] for r in _search_all(catalog)] == [1]


class RacingStore(CrashingStore):
    """A real store on which another run claims the next version number just before this run does."""

    def __init__(self, inner: ObjectStore, other: DatasetSpec) -> None:
        super().__init__(inner, crash_on="\0")
        self.other, self.winner = other, None

    def put_bytes(self, key: str, data: bytes, *, write_once: bool = False) -> ObjectInfo:
        if key.startswith("curated/versions/") and self.winner is None:
            self.winner = build_version(self.inner, self.other)  # the other run gets there first
        return self.inner.put_bytes(key, data, write_once=write_once)


def test_a_build_that_loses_the_number_to_other_content_builds_on_top(
    local_store: LocalObjectStore, catalog: Catalog
) -> None:
    _populate(local_store)
    racing = RacingStore(local_store, spec(SPEC_TEXT.replace("seed: 7", "seed: 11")))
    loser = build_version(racing, spec(), catalog=catalog)  # type: ignore[arg-type]
    assert racing.winner is not None and racing.winner.number == 1
    assert loser.number == 2 and loser.manifest.doc["parents"]["previous"] == racing.winner.version_id
    assert latest_claim(local_store, "chest_ct") == (2, loser.version_id)
    assert len(_keys(local_store, "curated/manifests/")) == 3  # the winner's, the loser's abandoned v1, its v2


def _search_all(catalog: Catalog) -> list[dict[str, object]]:
    from clinical_pipelines.catalog.search import SearchFilters, search

    return search(catalog, SearchFilters(all_versions=True))


def test_verify_never_follows_a_symlink_out_of_the_store(local_store: LocalObjectStore, tmp_path: Path) -> None:
    _populate(local_store)
    manifest = build_version(local_store, spec()).manifest
    row = manifest.objects[0]
    outside = tmp_path / "outside"
    outside.write_bytes(read_all(local_store, row["key"]))  # identical bytes, but not in the store
    path = local_store.root / row["key"]
    path.unlink()
    path.symlink_to(outside)
    report = verify_manifest(local_store, manifest)
    assert [(p.key, p.reason) for p in report.problems] == [(row["key"], "unreadable")]
