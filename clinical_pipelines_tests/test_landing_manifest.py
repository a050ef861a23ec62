"""drop.json parsing, safe names, path checks and content sniffing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from clinical_pipelines.landing.discovery import parse_partition_key, partition_key
from clinical_pipelines.landing.manifest import DropManifestError, is_safe_name, parse_drop_manifest
from clinical_pipelines.landing.sniff import sniff_modality
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.storage import read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth import SynthCorpus

SHA = "a" * 64


def manifest(files: list[object], **extra: object) -> bytes:
    return json.dumps({"drop_id": "d1", "source": "s1", "files": files, **extra}).encode()


def test_contract_example_parses_with_extra_keys_allowed() -> None:
    doc = manifest([{"path": "dicom/0001.dcm", "size": 524288, "sha256": SHA.upper(), "note": "x"}], sent_by="pacs")
    parsed = parse_drop_manifest(doc, source="s1", drop_id="d1")
    assert [(e.path, e.size, e.sha256, e.modality) for e in parsed.entries] == [("dicom/0001.dcm", 524288, SHA, None)]
    assert parsed.problems == ()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"path": "../x", "size": 1, "sha256": SHA}, "path_escapes_drop"),
        ({"path": "a/../../x", "size": 1, "sha256": SHA}, "path_escapes_drop"),
        ({"path": "/etc/passwd", "size": 1, "sha256": SHA}, "path_escapes_drop"),
        ({"path": "C:/x", "size": 1, "sha256": SHA}, "path_escapes_drop"),
        ({"path": "a\\b", "size": 1, "sha256": SHA}, "path_escapes_drop"),
        ({"path": "a", "size": -1, "sha256": SHA}, "invalid_entry"),
        ({"path": "a", "size": "1", "sha256": SHA}, "invalid_entry"),
        ({"path": "a", "size": 1, "sha256": "abc"}, "invalid_entry"),
        ({"path": "a", "size": 1}, "invalid_entry"),
        ({"path": "a", "size": 1, "sha256": SHA, "modality": "video"}, "invalid_modality"),
        ("not-an-object", "invalid_entry"),
    ],
)
def test_bad_entries_are_problems_not_crashes(entry: object, reason: str) -> None:
    good = {"path": "ok.txt", "size": 1, "sha256": SHA}
    parsed = parse_drop_manifest(manifest([good, entry]), source="s1", drop_id="d1")
    assert [e.path for e in parsed.entries] == ["ok.txt"]
    assert [p.reason for p in parsed.problems] == [reason]
    assert "etc/passwd" not in parsed.problems[0].detail  # details never quote paths


def test_duplicates_are_reported() -> None:
    entry = {"path": "a.txt", "size": 1, "sha256": SHA}
    parsed = parse_drop_manifest(manifest([entry, entry]), source="s1", drop_id="d1")
    assert len(parsed.entries) == 1
    assert [p.reason for p in parsed.problems] == ["duplicate_entry"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "unreadable_drop_manifest"),
        (b"\xff\xfe", "unreadable_drop_manifest"),
        (b"[]", "unreadable_drop_manifest"),
        (json.dumps({"drop_id": "d1", "source": "s1"}).encode(), "unreadable_drop_manifest"),
        (json.dumps({"drop_id": "other", "source": "s1", "files": []}).encode(), "drop_manifest_mismatch"),
    ],
)
def test_unreadable_manifests_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DropManifestError) as err:
        parse_drop_manifest(data, source="s1", drop_id="d1")
    assert err.value.reason == reason


def test_safe_names_and_partition_keys() -> None:
    for good in ("hospital-a", "drop_2024.11.01", "A" * 128, "x"):
        assert is_safe_name(good)
    for bad in ("", ".", "..", "a..b", "a b", "a/b", "ü", "A" * 129, "a\n"):
        assert not is_safe_name(bad)
    assert parse_partition_key(partition_key("src", "d-1")) == ("src", "d-1")
    with pytest.raises(ValueError):
        parse_partition_key("no-separator")


def test_sniffing() -> None:
    dicom = b"\0" * 128 + b"DICM" + b"\x02\x00"
    assert sniff_modality(dicom, "x.bin") == "dicom"
    assert sniff_modality(b"mrn,value,unit\nMRN1,1.5,mg\nMRN2,2.0,mg\n", "labs") == "tabular"
    assert sniff_modality(b"mrn;value\nMRN1;1.5\n", "labs.csv") == "tabular"
    assert sniff_modality(b"Patient seen today, doing well.\nPlan: follow up in 2 weeks, labs.\n", "n") == "notes"
    assert sniff_modality("Schmerzen im Knie, Röntgen unauffällig.".encode(), "note.txt") == "notes"
    assert sniff_modality(bytes(range(256)), "blob.bin") is None
    assert sniff_modality(b"   \n", "empty.txt") is None


def test_write_drop_puts_drop_json_last_and_matches_the_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, fsync=False)
    order: list[str] = []
    real_put = store.put_bytes

    def recording_put(key: str, data: bytes, **kw: bool) -> object:
        order.append(key)
        return real_put(key, data, **kw)

    store.put_bytes = recording_put  # type: ignore[method-assign]
    files = {"dicom/b.dcm": b"\0" * 132, "notes/a.txt": b"note\n"}
    write_drop(store, "src", "d1", files)
    assert order[-1] == "landing/src/d1/drop.json" and len(order) == 3
    parsed = parse_drop_manifest(read_all(store, "landing/src/d1/drop.json"), source="src", drop_id="d1")
    for entry in parsed.entries:
        data = read_all(store, f"landing/src/d1/{entry.path}")
        assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_synth_manifest_is_the_landing_writers_manifest(tmp_path: Path) -> None:
    drop = next(SynthCorpus(5, n_patients=2, slices_per_series=1, rows=16, columns=16).iter_drops())
    store = LocalObjectStore(tmp_path, fsync=False)
    write_drop(store, drop.source, drop.drop_id, {f.path: f.data for f in drop.files})
    assert read_all(store, f"landing/{drop.source}/{drop.drop_id}/drop.json") == drop.manifest_bytes()
