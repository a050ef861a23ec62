"""De-identification quality on labelled data, as figures (not a test).

    .venv/bin/python benchmarks/deid_quality.py [--notes-patients 60]

DICOM: for every instance of the generated corpus and of pydicom's own test files
(``pydicom.data``, plus ``pydicom-data`` when installed), count the Table E.1-1 attributes
(top level and nested) whose action is not Keep but that still hold their original non-empty
value after de-identification (must be 0). Files the engine refuses (burned-in annotation,
malformed dates...) are counted separately with their reasons.

Notes: on generated notes whose planted identifiers are known (the canaries), recall per
identifier kind (planted occurrences no longer present in the output) and precision (share of
replaced spans that overlap a planted identifier).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import re
from collections import Counter

import pydicom

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

KEY = b"quality benchmark secret, at least 32 bytes"


def _values(ds: pydicom.Dataset, actions: dict[int, str]) -> Counter[tuple[int, str]]:
    """(tag, original text) of every non-Keep attribute with a value, anywhere in the dataset.

    Times of day (TM) are included: with the modified-dates option they move with the dates by the
    patient's offset (which has a time-of-day part), so an unchanged time is a failure too.
    """
    found: Counter[tuple[int, str]] = Counter()
    for element in ds.iterall():
        if element.VR in ("SQ", "OB", "OW", "UN") or element.value in (None, "", b""):
            continue
        if actions.get(int(element.tag), "K") in ("K",):
            continue
        found[(int(element.tag), str(element.value))] += 1
    return found


def dicom_quality(files: dict[str, bytes], deid: DicomDeidentifier, label: str) -> None:
    left = 0
    checked = 0
    refused: Counter[str] = Counter()
    for data in files.values():
        try:
            original = pydicom.dcmread(io.BytesIO(data), force=True)
            before = _values(original, deid.profile.actions)
            out, _ = deid.deidentify_bytes(data)
        except DeidRejected as rejected:
            refused[rejected.reason] += 1
            continue
        except Exception as exc:  # pydicom cannot even read some deliberately broken test files
            refused[f"unreadable ({type(exc).__name__})"] += 1
            continue
        after = _values(pydicom.dcmread(io.BytesIO(out)), deid.profile.actions)
        checked += len(before)
        # A value that survives unchanged in the same attribute is a failure (UIDs are remapped,
        # dates shifted by at least a day, cleaned text emptied, pseudonyms differ from originals).
        left += sum(1 for key in before if key in after)
    print(f"DICOM {label}: {len(files)} files, {checked} non-Keep attribute values checked, "
          f"{left} left with their original value; refused {dict(refused) or 0}")  # fmt: skip


def notes_quality(patients: int) -> None:
    from clinical_pipelines.deid.notes import NoteDeidentifier

    corpus = SynthCorpus(31, n_patients=patients, slices_per_series=1, rows=16, columns=16, notes_per_patient=2)
    notes = [f.data.decode() for d in corpus.iter_drops() for f in d.files if f.modality == "notes"]
    canaries = [c for c in corpus.canaries() if len(c.value) >= 4]
    deid = NoteDeidentifier(Pseudonymizer(KEY))
    results = deid.deidentify_many(notes)
    planted: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    spans_total = spans_on_planted = 0
    for text, result in zip(notes, results, strict=True):
        regions = []
        for canary in canaries:
            pattern = re.compile(r"(?<![\w])" + re.escape(canary.value) + r"(?![\w])")
            for match in pattern.finditer(text):
                planted[canary.kind] += 1
                regions.append((match.start(), match.end()))
                if pattern.search(result.text) and canary.kind not in ("date", "birth_date"):
                    missed[canary.kind] += 1
        for _, start, end in result.spans:
            spans_total += 1
            spans_on_planted += any(start < e and s < end for s, e in regions)
    print(f"notes: {len(notes)} notes, {sum(planted.values())} planted identifier occurrences")
    for kind in sorted(planted):
        found = planted[kind] - missed[kind]
        print(f"  recall {kind:<16} {found / planted[kind]:6.3f}  ({found}/{planted[kind]})")
    print(f"  precision (replaced spans overlapping a planted identifier): "
          f"{spans_on_planted / spans_total:.3f} ({spans_on_planted}/{spans_total})")  # fmt: skip
    print("  (dates are replaced by shifted dates, so their recall counts a date as found when its span was replaced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes-patients", type=int, default=60)
    args = parser.parse_args()
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    corpus = SynthCorpus(37, n_patients=10, slices_per_series=10, rows=64, columns=64, notes_per_patient=0)
    generated = {f"{d.drop_id}/{f.path}": f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"}
    dicom_quality(generated, deid, "generated corpus")
    # pydicom's bundled test files straight from the package folder (get_testdata_files() would try
    # to download its external ones); plus the pydicom-data package's files when it is installed.
    folders = [os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")]
    # pydicom-data registers itself as an external data source (module data_store, DataStore.data_path).
    for entry in importlib.metadata.entry_points(group="pydicom.data.external_sources"):
        folders.append(str(entry.load()().data_path))
    test_files = {}
    for folder in folders:
        for root, _, names in os.walk(folder):
            for name in names:
                if name.lower().endswith((".dcm", ".dicom")) or "." not in name:
                    with open(os.path.join(root, name), "rb") as fh:
                        test_files[os.path.join(root, name)] = fh.read()
    dicom_quality(test_files, deid, f"pydicom test files ({', '.join(f.split('site-packages/')[-1] for f in folders)})")
    notes_quality(args.notes_patients)


if __name__ == "__main__":
    main()
