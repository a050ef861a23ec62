"""Training-ready shards: split determinism and leakage, shard/index consistency, bad input."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import Counter

import numpy as np
import pytest

from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.training import (
    ManifestError,
    ObjectMismatch,
    ShardIndex,
    build_training_shards,
    load_manifest,
)
from clinical_pipelines.training.samples import SampleError
from clinical_pipelines.training.writer import ordered_rows
from clinical_pipelines.zones import training_index_key
from clinical_pipelines_tests.test_training_support import decode_dicom, manifest_bytes, put_corpus

TARGET = 8192


def test_shards_and_index_are_consistent(store: ObjectStore) -> None:
    manifest = put_corpus(store)
    report = build_training_shards(store, manifest, shard_target_bytes=TARGET)
    index = ShardIndex.load(store, report.index_key)
    assert report.index_key == training_index_key("demo", load_manifest(manifest).version_id)
    rows = {r["sha256"]: r for r in manifest["objects"]}
    seen = Counter()
    for shard in index.shards:
        data = read_all(store, shard.key)
        assert len(data) == shard.size and hashlib.sha256(data).hexdigest() == shard.sha256
        assert f"/{shard.split}/" in shard.key
        assert shard.size <= TARGET or len(shard.samples) == 1
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # a plain tar (WebDataset layout: <key>.<ext>)
            names = tar.getnames()
            extracted = {name: tar.extractfile(name).read() for name in names}  # type: ignore[union-attr]
        in_file_order = [sorted(s.members, key=lambda ext, s=s: s.members[ext][0]) for s in shard.samples]
        assert names == [f"{s.key}.{ext}" for s, exts in zip(shard.samples, in_file_order, strict=True) for ext in exts]
        for sample in shard.samples:
            seen[sample.key] += 1
            row = rows[sample.key]
            assert row["split"] == shard.split
            span = data[sample.offset : sample.offset + sample.length]
            assert hashlib.sha256(span).hexdigest() == sample.sha256
            for ext, (offset, length) in sample.members.items():
                assert data[offset : offset + length] == extracted[f"{sample.key}.{ext}"]
            assert index.locate(sample.key) == (shard, sample)
            original = read_all(store, row["key"])
            if row["modality"] == "dicom":
                array = np.load(io.BytesIO(extracted[f"{sample.key}.npy"]))
                np.testing.assert_array_equal(array, decode_dicom(original))
                assert array.dtype == np.dtype("<i2") and array.shape == (16, 16)
            elif row["modality"] == "notes":
                assert extracted[f"{sample.key}.txt"] == original
            else:
                assert extracted[f"{sample.key}.csv"] == original
    assert seen == Counter({sha: 1 for sha in rows})  # every object in exactly one shard
    assert index.splits == dict(Counter(r["split"] for r in manifest["objects"]))
    assert report.bytes_written == sum(s.size for s in index.shards)


def test_sample_json_carries_label_dtype_shape_and_features(local_store: LocalObjectStore) -> None:
    import json

    manifest = put_corpus(local_store, patients=3)
    index = build_training_shards(local_store, manifest, shard_target_bytes=TARGET).index
    metas = []
    for shard in index.shards:
        data = read_all(local_store, shard.key)
        for sample in shard.samples:
            offset, length = sample.members["json"]
            metas.append(json.loads(data[offset : offset + length]))
    by_modality = {m["modality"]: m for m in metas}
    image = by_modality["dicom"]
    assert image["pixels"]["dtype"] == "<i2" and image["pixels"]["shape"] == [16, 16]
    assert image["pixels"]["rescale_intercept"] == -1024.0
    assert image["label"] in ("positive", "negative") and image["patient_id"].startswith("PSN-")
    assert by_modality["labs"]["table"]["columns"] == ["patient_id", "test", "value"]
    assert isinstance(by_modality["labs"]["table"]["rows"][0][2], float)
    assert by_modality["notes"]["text"]["chars"] > 0


def test_splits_are_deterministic_and_never_leak(tmp_path) -> None:
    def build(root: str, seed: int) -> tuple[ShardIndex, dict]:
        store = LocalObjectStore(tmp_path / root, fsync=False)
        manifest = put_corpus(store, patients=30, images_per_patient=2, seed=seed)
        return build_training_shards(store, manifest, shard_target_bytes=TARGET).index, manifest

    first, manifest = build("a", 5)
    again, _ = build("b", 5)
    other, _ = build("c", 6)
    assert first.to_bytes() == again.to_bytes()  # same seed -> byte-identical shards and index
    patient_of = {r["sha256"]: r["patient_id"] for r in manifest["objects"]}
    splits_of: dict[str, set[str]] = {}
    for shard in first.shards:
        for sample in shard.samples:
            splits_of.setdefault(patient_of[sample.key], set()).add(shard.split)
    assert len(splits_of) == 30 and all(len(s) == 1 for s in splits_of.values())  # no patient in two splits
    assert set(first.splits) == {"train", "val", "test"}
    assert [s.sha256 for s in first.shards] != [s.sha256 for s in other.shards]


def test_rebuild_reuses_the_index_and_a_tampered_object_is_named(local_store: LocalObjectStore) -> None:
    manifest = put_corpus(local_store, patients=4)
    first = build_training_shards(local_store, manifest_bytes(manifest), shard_target_bytes=TARGET)
    second = build_training_shards(local_store, manifest_bytes(manifest), shard_target_bytes=TARGET)
    assert not first.reused and second.reused and second.index == first.index
    victim = manifest["objects"][3]
    local_store.put_bytes(victim["key"], b"tampered")
    with pytest.raises(ObjectMismatch, match=victim["key"]):
        build_training_shards(local_store, manifest, shard_target_bytes=TARGET, rebuild=True)
    with pytest.raises(ManifestError, match="schema"):
        load_manifest({**manifest, "schema": "other/1"})


def _rle_compressed(store: ObjectStore, manifest: dict) -> dict:
    """``manifest`` with every DICOM object re-encoded as RLE Lossless (its pixels decode the same)."""
    import pydicom
    from pydicom.uid import RLELossless

    from clinical_pipelines.zones import curated_object_key

    rows = []
    for row in manifest["objects"]:
        if row["modality"] == "dicom":
            ds = pydicom.dcmread(io.BytesIO(read_all(store, row["key"])))
            ds.compress(RLELossless)
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            data = out.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            store.put_bytes(curated_object_key(sha), data)
            row = {**row, "key": curated_object_key(sha), "sha256": sha, "size": len(data)}
        rows.append(row)
    return {**manifest, "objects": rows}


def test_worker_processes_build_the_same_shards_and_name_a_tampered_object(tmp_path) -> None:
    from clinical_pipelines import warm_pool
    from clinical_pipelines.training.writer import PROCESS_MIN_SAMPLES

    store = LocalObjectStore(tmp_path / "store", fsync=False)
    manifest = _rle_compressed(store, put_corpus(store, patients=40, images_per_patient=2, seed=3))
    train = sum(1 for r in manifest["objects"] if r["split"] == "train")
    assert train >= PROCESS_MIN_SAMPLES  # the train split goes over the worker processes
    inline = build_training_shards(store, manifest, shard_target_bytes=TARGET, processes=1).index
    warm_pool.shutdown_all()
    pooled = build_training_shards(store, manifest, shard_target_bytes=TARGET, processes=2, rebuild=True).index
    assert "shard-samples" in warm_pool._POOLS  # compressed pixels were decoded in worker processes
    assert pooled.to_bytes() == inline.to_bytes()
    victim = next(r for r in manifest["objects"] if r["split"] == "train" and r["modality"] == "dicom")
    store.put_bytes(victim["key"], b"tampered")
    with pytest.raises(ObjectMismatch, match=victim["key"]):
        build_training_shards(store, manifest, shard_target_bytes=TARGET, processes=2, rebuild=True)
    tampered = _rle_compressed(store, put_corpus(store, patients=40, images_per_patient=2, seed=3))
    victim = next(r for r in tampered["objects"] if r["split"] == "train" and r["modality"] == "dicom")
    store.put_bytes(victim["key"], read_all(store, victim["key"])[:-64])  # a compressed object cut short
    victim["sha256"] = hashlib.sha256(read_all(store, victim["key"])).hexdigest()
    with pytest.raises(SampleError, match=victim["key"]):
        build_training_shards(store, tampered, shard_target_bytes=TARGET, processes=2, rebuild=True)


def test_shard_workers_come_from_the_environment_and_zero_is_refused(tmp_path) -> None:
    from clinical_pipelines.defs.resources import resources_for
    from clinical_pipelines.settings import Settings, SettingsError

    def settings(value: str) -> Settings:
        env = {"CLINICAL_PIPELINES_SHARD_WORKERS": value}
        return Settings.from_env(env, data_dir=tmp_path / "d", key_dir=tmp_path / "k")

    assert resources_for(settings("3"))["training"].build_processes == 3  # type: ignore[attr-defined]
    with pytest.raises(SettingsError, match="CLINICAL_PIPELINES_SHARD_WORKERS must be 1 or more"):
        settings("0")


def test_a_build_that_fails_half_way_leaves_no_temp_file_and_no_index(tmp_path) -> None:
    store = LocalObjectStore(tmp_path / "store", fsync=False)
    manifest = put_corpus(store, patients=12)
    victim = ordered_rows(load_manifest(manifest))["train"][-1]  # the last sample: shards before it are written
    store.put_bytes(victim.key, b"tampered")
    with pytest.raises(ObjectMismatch, match=victim.key):
        build_training_shards(store, manifest, shard_target_bytes=TARGET)
    assert store.head(training_index_key("demo", load_manifest(manifest).version_id)) is None
    leftovers = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and ".cp-tmp" in p.as_posix()]
    assert leftovers == []
