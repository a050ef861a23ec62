"""Put a synthetic corpus into a landing zone the way a source would, optionally with drops that exercise
every quarantine path. Test and sample data only: no engine imports this."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from clinical_pipelines.landing.manifest import DROP_MANIFEST
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.synth import SynthCorpus, SynthDrop
from clinical_pipelines.zones import landing_drop_prefix

FAULTY_SOURCE = "faulty-source"


@dataclass
class Written:
    """Totals of what went into landing."""

    drops: int = 0
    files: int = 0
    bytes: int = 0


def put_drop(store: ObjectStore, drop: SynthDrop) -> None:
    """Upload one drop to landing the way a source would: its files, then its drop.json."""
    write_drop(store, drop.source, drop.drop_id, {f.path: f.data for f in drop.files})


def write_corpus(store: ObjectStore, corpus: SynthCorpus, *, faults: bool = False) -> Written:
    """Write every drop of ``corpus`` (files first, drop.json last); with ``faults``, broken drops too."""
    written = Written()
    imaging: SynthDrop | None = None
    clinical: SynthDrop | None = None
    for drop in corpus.iter_drops():
        put_drop(store, drop)
        written.drops += 1
        written.files += len(drop.files)
        written.bytes += sum(len(f.data) for f in drop.files)
        modalities = {f.modality for f in drop.files}
        imaging = imaging or (drop if "dicom" in modalities else None)
        clinical = clinical or (drop if "tabular" in modalities else None)
    if faults and imaging is not None:
        written.drops += write_faulty_drops(store, imaging)
        if clinical is not None:
            written.drops += write_invalid_drop(store, imaging, clinical)
    return written


def write_faulty_drops(store: ObjectStore, good: SynthDrop) -> int:
    """Drops with known faults, built from a good drop's files. Returns how many drops were written.

    - ``faulty-source/drop-mixed``: one good file, one truncated (size mismatch), one with a
      flipped byte (sha256 mismatch), a path escaping the drop, a missing file, an unlisted file,
      and a binary blob that is no known modality.
    - ``faulty-source/drop-unreadable``: a drop.json that is not JSON.
    - ``faulty-source/drop with spaces``: an unsafe drop id.
    """
    first, second = good.files[0], good.files[-1]
    prefix = landing_drop_prefix(FAULTY_SOURCE, "drop-mixed")
    flipped = bytearray(second.data)
    flipped[len(flipped) // 2] ^= 0xFF
    blob = bytes(range(256)) * 16
    uploads = {
        "good/" + first.path.rsplit("/", 1)[-1]: first.data,
        "truncated.bin": first.data[: len(first.data) // 2],
        "corrupted.bin": bytes(flipped),
        "unlisted.txt": b"a file the source forgot to list\n",
        "blob.bin": blob,
    }
    for path, data in uploads.items():
        store.put_bytes(prefix + path, data)

    def entry(path: str, data: bytes) -> dict[str, object]:
        return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    files = [
        entry("good/" + first.path.rsplit("/", 1)[-1], first.data),
        entry("truncated.bin", first.data),  # declares the full size
        entry("corrupted.bin", second.data),  # declares the original hash
        entry("../../../etc/passwd", b"x"),
        entry("missing.dcm", b"never uploaded"),
        entry("blob.bin", blob),
    ]
    manifest = {"drop_id": "drop-mixed", "source": FAULTY_SOURCE, "files": files}
    store.put_bytes(prefix + DROP_MANIFEST, json.dumps(manifest, indent=2).encode())

    unreadable = landing_drop_prefix(FAULTY_SOURCE, "drop-unreadable")
    store.put_bytes(unreadable + "notes/n1.txt", first.data[:64])
    store.put_bytes(unreadable + DROP_MANIFEST, b'{"drop_id": "drop-unreadable", "files": [')

    unsafe = landing_drop_prefix(FAULTY_SOURCE, "drop with spaces")
    store.put_bytes(unsafe + "a.txt", b"content of a drop whose id is unsafe\n")
    store.put_bytes(
        unsafe + DROP_MANIFEST,
        json.dumps({"drop_id": "drop with spaces", "source": FAULTY_SOURCE, "files": []}).encode(),
    )
    return 3


def write_invalid_drop(store: ObjectStore, imaging: SynthDrop, clinical: SynthDrop) -> int:
    """``faulty-source/drop-invalid``: a drop that ingests cleanly but fails validation in every way.

    DICOM: good slices, one with truncated pixel data, one text file claiming to be DICOM (per-item
    quarantine). Notes: good notes and one too short (per-item). Tables: a labs table with a
    duplicated key (critical: the drop stops at validation) and an outcomes table that is not
    comma-separated (quarantined).
    """
    files: dict[str, bytes] = {}
    modalities: dict[str, str] = {}
    dicoms = [f for f in imaging.files if f.modality == "dicom"]
    for f in dicoms[:-1]:
        files[f.path] = f.data
    files["dicom/truncated-pixels.dcm"] = dicoms[-1].data[:-4096]
    files["dicom/not-really.dcm"] = b"this is a text file that a source labelled as DICOM\n"
    modalities["dicom/not-really.dcm"] = "dicom"
    for f in clinical.files:
        if f.modality == "notes":
            files[f.path] = f.data
    files["notes/too-short.txt"] = b"ok\n"
    labs = next(f.data for f in clinical.files if f.path.endswith("labs.csv"))
    labs_lines = labs.decode().splitlines()
    files["tabular/labs.csv"] = ("\n".join([*labs_lines, labs_lines[1]]) + "\n").encode()
    outcomes = next(f.data for f in clinical.files if f.path.endswith("outcomes.csv"))
    files["tabular/outcomes.csv"] = outcomes.replace(b",", b";")
    modalities["tabular/outcomes.csv"] = "tabular"
    write_drop(store, FAULTY_SOURCE, "drop-invalid", files, modalities=modalities)
    return 1
