"""Classification at ingest: the sources file (errors with file:line), each drop's tags fixed at ingest, and the
tags travelling through the real pipeline onto curated versions, the catalog, asset metadata and access."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from clinical_pipelines.catalog.access import LOCAL_ADMIN, Access, AccessDenied
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.catalog.search import SearchFilters, search
from clinical_pipelines.landing.sources import (
    SHIPPED_SOURCES,
    SourcesError,
    allowed_purposes,
    classify_drop,
    load_sources,
    parse_sources,
    read_classification,
    write_classification,
)
from clinical_pipelines.storage.local import LocalObjectStore

SOURCES = """\
sources:
  hospital-a:
    owner: imaging-research
    approval: IRB-2024-117
    purposes: [research, training]
  hospital-b:
    owner: pediatric-imaging
    approval: IRB-2025-042
    purposes: [research]
    sensitivity: [pediatric]
"""


@pytest.mark.parametrize(("text", "line", "message"), [
    ("sources:\n  a:\n    owner: x\n    approval: A1\n    purpose: [r]\n", 5, "unknown field 'purpose'"),
    ("sources:\n  a:\n    owner: x\n    purposes: [r]\n", 3, "missing: approval"),
    ("sources:\n  a:\n    owner: x\n    approval: A1\n    purposes: [r]\n    sensitivity: [Kids]\n", 6,
     "'Kids' must be a lower-case word"),
    ("sources:\n  a:\n    owner: x\n    approval: A1\n    purposes: [r]\n    sensitivity: [phi]\n", 6,
     "set by the platform"),
    ("sources:\n  a b:\n    owner: x\n", 2, "source name 'a b' must match"),
    ("sources: [a, b]\n", 1, "needs a mapping 'sources:'"),
    ("sources:\n  a:\n    owner: [x\n", 4, "not valid YAML"),
])  # fmt: skip
def test_a_bad_sources_file_names_its_line(text: str, line: int, message: str) -> None:
    with pytest.raises(SourcesError) as caught:
        parse_sources(text, "sources.yaml")
    assert str(caught.value).startswith(f"sources.yaml:{line}: ") and message in str(caught.value), caught.value


def test_drops_are_classified_once_at_ingest(tmp_path: Path) -> None:
    sources = parse_sources(SOURCES)
    assert set(load_sources(SHIPPED_SOURCES)) == {"hospital-a", "hospital-b"}  # the shipped file parses
    child = classify_drop("hospital-b", "d1", ["dicom", "notes"], sources)
    assert child.tags == ("approval:IRB-2025-042", "modality:dicom", "modality:notes", "pediatric", "phi",
                          "source:hospital-b")  # fmt: skip
    assert child.purposes == ("research",) and child.owner == "pediatric-imaging"
    stranger = classify_drop("elsewhere", "d9", ["tabular"], sources)
    assert stranger.tags == ("modality:tabular", "phi", "source:elsewhere", "unregistered") and stranger.owner is None
    store = LocalObjectStore(tmp_path, fsync=False)
    assert write_classification(store, child) == child
    later = classify_drop("hospital-b", "d1", ["dicom", "notes"], parse_sources(SOURCES.replace("pediatric", "x")))
    assert write_classification(store, later) == child  # the first classification stands
    assert read_classification(store, "hospital-b", "d1") == child
    assert read_classification(store, "hospital-b", "nope") is None
    assert allowed_purposes(["purpose:qa", "purpose:research", "source:x"]) == ("qa", "research")
    assert allowed_purposes(["purpose:none"]) == () and allowed_purposes(["source:x"]) is None


def test_tags_travel_from_ingest_to_versions_catalog_metadata_and_access(tmp_path: Path) -> None:
    from clinical_pipelines.headless import process_landing
    from clinical_pipelines.settings import Settings
    from clinical_pipelines_tests.corpus import put_drops, small_corpus

    sources_file = tmp_path / "sources.yaml"
    sources_file.write_text(SOURCES)
    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys", sources_file=sources_file)
    store = settings.open_store()
    drops, _ = small_corpus()
    put_drops(store, drops)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        summary = process_landing(settings, instance)
        raw_events = instance.get_latest_materialization_event(dg.AssetKey(["raw", "dicom"]))
        curated_events = {
            name: instance.get_latest_materialization_event(dg.AssetKey(["curated", name]))
            for name in ("brain_mr", "chest_ct_outcomes", "notes_labs")
        }
    assert all(d.success for d in summary.drops)
    assert raw_events is not None and raw_events.asset_materialization is not None
    raw_tags = raw_events.asset_materialization.metadata["policy_tags"].value
    assert "phi" in raw_tags and "modality:dicom" in raw_tags  # type: ignore[operator]
    catalog = Catalog.open(settings.catalog_url)
    access = Access(catalog.engine)
    access.bootstrap()
    checked: dict[str, bool] = {}
    for name, event in curated_events.items():
        if event is None or event.asset_materialization is None:
            continue
        info = catalog.show(name)
        parents = [edge.split(":", 1)[1] for edge in info["lineage"]["from"] if edge.startswith("drop:")]
        pediatric = any(p.startswith("hospital-b/") for p in parents)
        tags = set(info["policy_tags"]) | set(info["labels"])
        assert all(":" not in t for t in info["policy_tags"]) and all(":" in t for t in info["labels"])
        assert "phi" not in tags and "deid:ps3.15-e1-basic@2024b" in tags
        assert ("pediatric" in tags) == pediatric, (name, parents, tags)
        assert {f"source:{p.split('/')[0]}" for p in parents} <= tags
        shown = event.asset_materialization.metadata
        assert set(shown["policy_tags"].value) | set(shown["labels"].value) == tags  # type: ignore[arg-type]
        scope = access.version_scope(info["version_id"])
        assert ("pediatric" in scope.tags) == pediatric and all(":" not in t for t in scope.tags)
        for tag in scope.tags:  # a grant for every restrictive tag but pediatric
            if tag != "pediatric":
                access.grant(LOCAL_ADMIN, "adult-team", ["read"], project=scope.project, tag=tag)
        if pediatric:
            with pytest.raises(AccessDenied, match="for tag pediatric"):
                access.authorize("adult-team", "read", scope, operation="show")
            access.grant(LOCAL_ADMIN, "adult-team", ["read"], project=scope.project, tag="pediatric")
        access.authorize("adult-team", "read", scope, operation="show")
        # A declared purpose must be one every source of the version allows.
        allowed = set.intersection(*({"research", "training"} if p.startswith("hospital-a/") else {"research"}
                                     for p in parents))  # fmt: skip
        assert scope.purposes == tuple(sorted(allowed)) and f"purpose:{sorted(allowed)[0]}" in tags
        access.authorize("adult-team", "read", scope, operation="show", purpose="research")
        if "training" in allowed:
            access.authorize("adult-team", "read", scope, operation="show", purpose="training")
        else:
            with pytest.raises(AccessDenied, match=r"purpose 'training' is not allowed .* allow: research"):
                access.authorize("adult-team", "read", scope, operation="show", purpose="training")
        checked[name] = pediatric
    found = {r["dataset"] for r in search(catalog, SearchFilters(policy_tag="pediatric"))}
    catalog.close()
    assert len(checked) >= 2 and found == {n for n, p in checked.items() if p} != set()
