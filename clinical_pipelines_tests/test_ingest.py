"""Ingest engine: landing drop → encrypted, content-addressed raw zone + quarantine. Local folder and S3."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.ingest import DropIngestor, DropNotFound
from clinical_pipelines.raw.zone import DropConflict, RawZone
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth.landing import FAULTY_SOURCE, write_faulty_drops
from clinical_pipelines_tests.corpus import find_planted, put_drops, small_corpus


def all_objects(store: ObjectStore, prefix: str) -> list[tuple[str, bytes]]:
    return [(info.key, read_all(store, info.key)) for info in store.list(prefix)]


def test_good_drop_is_stored_encrypted_content_addressed_and_reads_back_exactly(
    store: ObjectStore, keyring: KeyRing
) -> None:
    drops, canaries = small_corpus()
    put_drops(store, drops)
    ingestor = DropIngestor(store, keyring, workers=3)
    raw = RawZone(store, keyring)
    for drop in drops:
        report = ingestor.ingest(drop.source, drop.drop_id)
        assert report.quarantined == []
        assert sorted(f.path for f in report.files) == sorted(f.path for f in drop.files)
        for synth_file in drop.files:
            digest = hashlib.sha256(synth_file.data).hexdigest()
            assert raw.read_object(digest) == synth_file.data
            stored = read_all(store, raw.object_key(digest))
            assert synth_file.data[:64] not in stored  # encrypted at rest
        modalities = {f.path: f.modality for f in report.files}
        assert modalities == {f.path: f.modality for f in drop.files}  # sniffed from content
        record = raw.read_drop_record(drop.source, drop.drop_id)
        assert record.files == tuple(report.files)
        assert report.key_ids == {keyring.current_id}
    # Nothing stored in the raw zone shows a planted identifier, drop records included.
    assert find_planted(all_objects(store, "raw/"), canaries) == []


def test_reingest_is_idempotent_and_identical_content_is_stored_once(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    drop = drops[0]
    put_drops(store, [drop])
    ingestor = DropIngestor(store, keyring)
    first = ingestor.ingest(drop.source, drop.drop_id)
    objects_after_first = sorted(info.key for info in store.list("raw/"))
    stored_objects = len(list(store.list("raw/objects/")))
    assert stored_objects == len(drop.files) + 1  # the files and drop.json
    again = ingestor.ingest(drop.source, drop.drop_id)
    assert again.new_objects == 0 and again.deduplicated == len(drop.files)
    assert not again.record_written and first.record_written
    assert sorted(info.key for info in store.list("raw/")) == objects_after_first
    # The same bytes arriving in another drop are not stored twice.
    write_drop(store, drop.source, "drop-copy", {f.path: f.data for f in drop.files})
    copy = ingestor.ingest(drop.source, "drop-copy")
    assert copy.new_objects == 0 and len(copy.files) == len(drop.files)
    assert len(list(store.list("raw/objects/"))) == stored_objects + 1  # only the copy's own drop.json is new


def test_a_changed_drop_under_the_same_id_is_refused(store: ObjectStore, keyring: KeyRing) -> None:
    write_drop(store, "src", "d1", {"a.txt": b"first version of a note\n"})
    DropIngestor(store, keyring).ingest("src", "d1")
    write_drop(store, "src", "d1", {"a.txt": b"second version of a note\n"})
    with pytest.raises(DropConflict, match="src/d1") as err:
        DropIngestor(store, keyring).ingest("src", "d1")
    assert "note" not in str(err.value)


def test_missing_drop_is_an_error_naming_only_ids(store: ObjectStore, keyring: KeyRing) -> None:
    with pytest.raises(DropNotFound, match="src/nothing"):
        DropIngestor(store, keyring).ingest("src", "nothing")


def test_faulty_drop_quarantines_each_bad_file_keeps_bytes_and_goes_on(store: ObjectStore, keyring: KeyRing) -> None:
    drops, canaries = small_corpus()
    write_faulty_drops(store, drops[0])
    landing = {k: v for k, v in all_objects(store, f"landing/{FAULTY_SOURCE}/drop-mixed/")}
    report = DropIngestor(store, keyring).ingest(FAULTY_SOURCE, "drop-mixed")
    assert len(report.files) == 1  # the one good file went on
    assert report.quarantined_by_reason() == {
        "missing_file": 1,
        "path_escapes_drop": 1,
        "sha256_mismatch": 1,
        "size_mismatch": 1,
        "unlisted_file": 1,
        "unrecognised_content": 1,
    }
    quarantine = Quarantine(store, keyring)
    for record in report.quarantined:
        path = quarantine.original_path(record)
        if record.reason in ("missing_file", "path_escapes_drop"):
            assert record.bytes_key is None
            continue
        with quarantine.open_original(record) as fh:
            kept = fh.read()
        assert kept == landing[f"landing/{FAULTY_SOURCE}/drop-mixed/{path}"]  # the original bytes, exactly
        assert hashlib.sha256(kept).hexdigest() == record.sha256_actual
    truncated = next(r for r in report.quarantined if r.reason == "size_mismatch")
    assert truncated.size_actual == truncated.size_declared // 2  # type: ignore[operator]
    # Quarantine records in clear text carry no path and no planted identifier.
    clear = [(k, v) for k, v in all_objects(store, "quarantine/") if k.endswith(".json")]
    assert find_planted(clear, (*canaries, "etc/passwd", "truncated.bin", "corrupted.bin")) == []


def test_corrupted_content_never_appears_under_its_declared_address(store: ObjectStore, keyring: KeyRing) -> None:
    good = b"the real content of the file\n" * 10
    bad = bytearray(good)
    bad[5] ^= 0x20
    store.put_bytes("landing/src/d2/n.txt", bytes(bad))
    entry = {"path": "n.txt", "size": len(good), "sha256": hashlib.sha256(good).hexdigest()}
    store.put_bytes(
        "landing/src/d2/drop.json", json.dumps({"drop_id": "d2", "source": "src", "files": [entry]}).encode()
    )
    report = DropIngestor(store, keyring).ingest("src", "d2")
    assert [r.reason for r in report.quarantined] == ["sha256_mismatch"]
    assert store.head(RawZone(store, keyring).object_key(entry["sha256"])) is None
    assert store.head(RawZone(store, keyring).object_key(hashlib.sha256(bytes(bad)).hexdigest())) is None


def test_unreadable_drop_manifest_quarantines_the_whole_drop(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    write_faulty_drops(store, drops[0])
    report = DropIngestor(store, keyring).ingest(FAULTY_SOURCE, "drop-unreadable")
    assert report.manifest_error == "unreadable_drop_manifest"
    assert report.files == []
    assert len(report.quarantined) == 2  # drop.json itself and the file beside it
    assert all(r.bytes_key for r in report.quarantined)


def test_symlink_in_a_local_drop_is_not_followed(tmp_path: Path, keyring: KeyRing) -> None:
    store = LocalObjectStore(tmp_path / "data", fsync=False)
    outside = tmp_path / "outside-secret.txt"
    outside.write_bytes(b"not part of any drop\n")
    write_drop(store, "src", "d3", {"ok.txt": b"fine note text\n"})
    os.symlink(outside, tmp_path / "data/landing/src/d3/link.txt")
    manifest = json.loads(read_all(store, "landing/src/d3/drop.json"))
    data = outside.read_bytes()
    manifest["files"].append({"path": "link.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    store.put_bytes("landing/src/d3/drop.json", json.dumps(manifest).encode())
    report = DropIngestor(store, keyring).ingest("src", "d3")
    assert [f.path for f in report.files] == ["ok.txt"]
    assert [(r.reason, r.bytes_key) for r in report.quarantined] == [("path_escapes_drop", None)]
    assert store.head(RawZone(store, keyring).object_key(hashlib.sha256(data).hexdigest())) is None


def test_oversized_drop_manifest_is_quarantined_unread(local_store: LocalObjectStore, keyring: KeyRing) -> None:
    from clinical_pipelines.landing.manifest import MAX_MANIFEST_BYTES

    local_store.put_bytes("landing/src/huge/n.txt", b"a note\n")
    local_store.put_bytes("landing/src/huge/drop.json", b" " * (MAX_MANIFEST_BYTES + 1))
    report = DropIngestor(local_store, keyring).ingest("src", "huge")
    assert report.manifest_error == "unreadable_drop_manifest" and report.files == []
    assert sorted(r.size_actual for r in report.quarantined) == [7, MAX_MANIFEST_BYTES + 1]  # type: ignore[type-var]
