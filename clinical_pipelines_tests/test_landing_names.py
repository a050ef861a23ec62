"""Keyed identifiers: a PHI-bearing file name, and its plain sha256, appear in no byte the platform keeps."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg

from clinical_pipelines.headless import process_landing
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.quarantine import Quarantine
from clinical_pipelines.raw.zone import RawZone
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage.names import NameKey, load_name_key
from clinical_pipelines_tests.corpus import files_under, small_corpus
from clinical_pipelines_tests.test_sensor import tick

NAME = "SMITH_JOHN_MRN1234567.dcm"
UNSAFE_FOLDER = "SMITH JOHN MRN1234567"


def _needles(texts: list[str]) -> list[bytes]:
    """The texts themselves and every plain sha256 of them, as 12-hex prefixes (any longer prefix contains one)."""
    out = []
    for text in texts:
        out.append(text.encode())
        digest = hashlib.sha256(text.encode()).hexdigest()
        out += [digest[:12].encode(), digest[:12].upper().encode()]
    return out


def _hits(blobs: list[tuple[str, bytes]], needles: list[bytes]) -> list[tuple[str, bytes]]:
    return [(where, n) for where, blob in blobs for n in needles if n in blob]


def test_a_phi_file_name_and_its_plain_hash_leak_nowhere(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    store = settings.open_store()
    drops, _ = small_corpus()
    dicom = next(f.data for d in drops for f in d.files if f.modality == "dicom")
    # Ingested (a real DICOM), quarantined (text named .dcm: modality_mismatch; a wrong sha256), and
    # inside a folder whose own name is unsafe (the whole folder is quarantined).
    write_drop(store, "src", "phi", {f"dicom/{NAME}": dicom, f"notes/{NAME}": b"a note, not an image\n"})
    manifest = json.loads(store.open_read("landing/src/phi/drop.json").read())
    manifest["files"].append({"path": f"bad/{NAME}", "size": 3, "sha256": "0" * 64})
    store.put_bytes(f"landing/src/phi/bad/{NAME}", b"abc")
    store.put_bytes("landing/src/phi/drop.json", json.dumps(manifest).encode())
    (tmp_path / "data" / "landing" / "src" / UNSAFE_FOLDER).mkdir(parents=True)
    (tmp_path / "data" / "landing" / "src" / UNSAFE_FOLDER / NAME).write_bytes(b"held in an unsafe folder")
    (tmp_path / "data" / "landing" / "src" / UNSAFE_FOLDER / "drop.json").write_bytes(b"{}")
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        sensor = tick(instance, store.url, None, key_dir=tmp_path / "keys")
        summary = process_landing(settings, instance)
        assert {d.partition_key: d.success for d in summary.drops} == {"src/phi": True}
        assert summary.rejected_folders == 1
        run_configs = [(r.run_id, json.dumps(r.run_config).encode()) for r in instance.get_runs()]
        logs = [
            (r.run_id, json.dumps([e.message + repr(e.dagster_event) for e in instance.all_logs(r.run_id)]).encode())
            for r in instance.get_runs()
        ]
    keyring = settings.keyring()
    quarantine = Quarantine(store, keyring)
    reasons = {quarantine.original_path(r): r.reason for r in quarantine.records()}
    assert reasons[f"notes/{NAME}"] == "modality_mismatch" and reasons[f"bad/{NAME}"] == "sha256_mismatch"
    assert reasons[NAME] == "unsafe_name"  # the file of the unsafe folder, decrypted only through the key
    assert "dicom/" + NAME in {f.path for f in RawZone(store, keyring).read_drop_record("src", "phi").files}

    texts = [
        NAME,
        "SMITH_JOHN",
        "MRN1234567",
        f"dicom/{NAME}",
        f"notes/{NAME}",
        f"bad/{NAME}",
        UNSAFE_FOLDER,
        f"landing/src/{UNSAFE_FOLDER}/",
        f"landing/src/{UNSAFE_FOLDER}",
        f"src/{UNSAFE_FOLDER}",
    ]
    needles = _needles(texts)
    blobs = [("sensor cursor", (sensor.cursor or "").encode())]
    blobs += [("sensor run config", json.dumps([r.run_config for r in sensor.run_requests or []]).encode())]
    blobs += run_configs + logs
    blobs += list(files_under(home))  # SQLite event log, run storage, compute logs
    blobs += list(files_under(settings.data_dir, exclude=[settings.data_dir / "landing"]))  # every zone at rest
    blobs += [("object keys", "\n".join(i.key for i in store.list("") if not i.key.startswith("landing/")).encode())]
    assert _hits(blobs, needles) == []
    # The raw zone's layout does not confirm which content was ingested either.
    content_sha = hashlib.sha256(dicom).hexdigest()
    raw_keys = "\n".join(i.key for i in store.list("raw/")).encode()
    assert content_sha[:12].encode() not in raw_keys
    # ... while ids stay linkable for an operator holding the keys.
    names = load_name_key(store, keyring)
    assert names == load_name_key(settings.open_store(), settings.keyring())
    ids = {r.path_id for r in quarantine.records() if quarantine.original_path(r) == f"notes/{NAME}"}
    assert ids == {names.name_id(f"notes/{NAME}")}


def test_name_ids_are_keyed() -> None:
    one, other = NameKey(b"1" * 32), NameKey(b"2" * 32)
    assert one.name_id(NAME) == one.name_id(NAME) != other.name_id(NAME)
    assert one.name_id(NAME) not in hashlib.sha256(NAME.encode()).hexdigest()
    assert one.object_address("a" * 64) != one.name_id("a" * 64)  # separate domains
