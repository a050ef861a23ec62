"""Object stores: streaming, atomic and write-once puts, listings, unsafe keys — on a folder and on S3."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest

from clinical_pipelines.storage import ObjectAlreadyExists, ObjectNotFound, ObjectStore, UnsafeKey, read_all
from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.storage.s3 import PART_SIZE, S3ObjectStore


class PatternStream:
    """A large deterministic stream generated on the fly (never held whole in memory)."""

    def __init__(self, size: int) -> None:
        self.size, self.pos = size, 0
        self.block = bytes(range(256)) * 4096  # 1 MiB

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        offset = self.pos % len(self.block)
        out = (self.block[offset:] + self.block)[:n] if n else b""
        self.pos += len(out)
        return out


def test_roundtrip_small_and_large(store: ObjectStore) -> None:
    store.put_bytes("raw/a.bin", b"hello")
    assert read_all(store, "raw/a.bin") == b"hello"
    size = PART_SIZE * 2 + 12345  # multipart on S3
    info = store.put_stream("raw/big.bin", PatternStream(size))  # type: ignore[arg-type]
    assert info.size == size
    assert store.head("raw/big.bin").size == size  # type: ignore[union-attr]
    expected = PatternStream(size)
    with store.open_read("raw/big.bin") as fh:
        while chunk := fh.read(1 << 20):
            assert chunk == expected.read(len(chunk))
    assert expected.pos == size


def test_streaming_put_does_not_hold_the_object_in_memory(local_store: LocalObjectStore) -> None:
    # (Local only: moto keeps S3 objects in this same process, which would count against us.)
    size = 64 * 1024 * 1024
    tracemalloc.start()
    local_store.put_stream("raw/stream.bin", PatternStream(size))  # type: ignore[arg-type]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte upload"


def test_s3_large_objects_go_up_in_parts(s3_store: S3ObjectStore) -> None:
    s3_store.put_stream("raw/parts.bin", PatternStream(PART_SIZE * 3 + 1))  # type: ignore[arg-type]
    etag = s3_store.client.head_object(Bucket=s3_store.bucket, Key="zones/raw/parts.bin")["ETag"]
    assert etag.strip('"').endswith("-4")  # a multipart ETag names its part count


def test_write_once_refuses_overwrite_and_keeps_the_original(store: ObjectStore) -> None:
    store.put_bytes("raw/once", b"first", write_once=True)
    with pytest.raises(ObjectAlreadyExists):
        store.put_bytes("raw/once", b"second", write_once=True)
    with pytest.raises(ObjectAlreadyExists):
        store.put_stream("raw/once", PatternStream(PART_SIZE + 1), write_once=True)  # type: ignore[arg-type]
    assert read_all(store, "raw/once") == b"first"
    store.put_bytes("raw/mutable", b"1")
    store.put_bytes("raw/mutable", b"2")
    assert read_all(store, "raw/mutable") == b"2"


def test_failed_verify_publishes_nothing(store: ObjectStore) -> None:
    def refuse() -> None:
        raise ValueError("hash mismatch")

    for size in (10, PART_SIZE + 10):
        with pytest.raises(ValueError, match="hash mismatch"):
            store.put_stream(f"raw/v{size}", PatternStream(size), verify=refuse)  # type: ignore[arg-type]
        assert store.head(f"raw/v{size}") is None
    assert list(store.list("raw/")) == []


def test_list_paginates_in_key_order_and_children_are_delimited(store: ObjectStore) -> None:
    keys = [f"landing/src/drop-{i:03d}/f{j}.txt" for i in range(25) for j in range(3)]
    keys += ["landing/src/drop-00a", "landing/other/x/y.txt"]
    for key in keys:
        store.put_bytes(key, b"x")
    listed = [info.key for info in store.list("landing/src/", page_size=7)]
    assert listed == sorted(k for k in keys if k.startswith("landing/src/"))
    after = [info.key for info in store.list("landing/src/", start_after="landing/src/drop-010/f2.txt", page_size=5)]
    assert after == [k for k in listed if k > "landing/src/drop-010/f2.txt"]
    assert list(store.list_children("landing")) == ["other", "src"]
    assert list(store.list_children("landing/src"))[:2] == ["drop-000", "drop-001"]
    assert len(list(store.list_children("landing/src"))) == 25
    assert list(store.list_children("landing/none")) == []


def test_missing_and_unsafe_keys(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.open_read("raw/nope")
    assert store.head("raw/nope") is None
    for bad in ("../x", "/abs", "a/../b", "a//b", "a/./b", "", "a\\b", "a/\x00"):
        with pytest.raises(UnsafeKey):
            store.put_bytes(bad, b"x")
    store.delete("raw/nope")  # absent: no error


def test_local_store_refuses_symlinks(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root", fsync=False)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside the store")
    (tmp_path / "root" / "landing").mkdir(parents=True)
    os.symlink(secret, tmp_path / "root" / "landing" / "link.txt")
    os.symlink(tmp_path, tmp_path / "root" / "escape")
    with pytest.raises(UnsafeKey):
        store.open_read("landing/link.txt")
    with pytest.raises(UnsafeKey):
        store.open_read("escape/secret.txt")
    with pytest.raises(UnsafeKey):
        store.put_bytes("escape/new.txt", b"x")
    assert not (tmp_path / "new.txt").exists()


def test_local_write_is_atomic_no_temp_left_visible(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root", fsync=True)

    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 1000

    with pytest.raises(OSError):
        store.put_stream("raw/partial", Exploding())  # type: ignore[arg-type]
    assert store.head("raw/partial") is None
    # Nothing left anywhere: not in the target folder, not in the store's temp folder.
    assert [p for p in (tmp_path / "root").rglob("*") if p.is_file()] == []


def test_local_open_write_publishes_only_a_complete_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root", fsync=True)
    with store.open_write("training/x/shard-000000.tar") as out:
        out.write(b"a" * 700_000)
        assert store.head("training/x/shard-000000.tar") is None  # nothing visible while it is written
        out.write(b"b" * 10)
    assert read_all(store, "training/x/shard-000000.tar") == b"a" * 700_000 + b"b" * 10
    with pytest.raises(RuntimeError), store.open_write("training/x/shard-000001.tar") as out:
        out.write(b"c" * 2_000_000)
        raise RuntimeError("the build failed half way")
    assert store.head("training/x/shard-000001.tar") is None
    files = sorted(p.relative_to(tmp_path / "root").as_posix() for p in (tmp_path / "root").rglob("*") if p.is_file())
    assert files == ["training/x/shard-000000.tar"]  # no temp file left


def test_s3_write_once_is_enforced_by_the_bucket(s3_store: S3ObjectStore) -> None:
    # The precondition lives server-side: a second client with no local state is refused too.
    s3_store.put_bytes("raw/obj", b"a", write_once=True)
    other = S3ObjectStore(s3_store.bucket, "zones", client=s3_store.client)
    with pytest.raises(ObjectAlreadyExists):
        other.put_bytes("raw/obj", b"b", write_once=True)
    body = s3_store.client.get_object(Bucket=s3_store.bucket, Key="zones/raw/obj")["Body"].read()
    assert body == b"a"
