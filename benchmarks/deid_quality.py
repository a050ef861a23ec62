"""De-identification quality on labelled data, as figures (not a test).

    .venv/bin/python benchmarks/deid_quality.py [--notes-patients 60]

DICOM: for every instance of the generated corpus and of pydicom's own test files
(``pydicom.data``, plus ``pydicom-data`` when installed), count the Table E.1-1 attributes
(top level and nested) whose action is not Keep but that still hold their original non-empty
value after de-identification (must be 0). Files the engine refuses (burned-in annotation,
malformed dates...) are counted separately with their reasons.

Notes: recall per identifier kind, precision (share of replaced spans on a labelled identifier)
and clinical phrases kept, for our engine and, in the same run on the same texts, out-of-the-box
Presidio (default recognizers, same spaCy model, one ``analyze`` per note), on (a) the project's
generator (canaries as labels), (b) presidio-evaluator's ``PresidioSentenceFaker`` sentences and
(c) the hand-written notes of ``clinical_pipelines_tests/data/notes``, (d) ``notes_heldout`` (written without sight
of the engine, a development set since its misses were read), (e) and (f) the held-out hand-written notes of
``notes_heldout2`` and ``notes_heldout3`` (written without sight of the engine or of the other sets; see
``notes_eval``), (g) ``notes_dev``, written to be read while developing (no unbiased figure), and (h) the
i2b2 2014 example notes that ``philter-ucsf`` ships (real notes with surrogate identifiers, i2b2's own tags; held
out: their misses are not read).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
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


def notes_quality(patients: int, faker_sentences: int) -> None:
    """Recall per kind, precision and phrases kept: ours beside out-of-the-box Presidio, same texts, same run."""
    from clinical_pipelines.deid.notes import NoteDeidentifier
    from clinical_pipelines_tests import notes_eval

    sets = {
        "(a) project generator (canaries)": notes_eval.synth_notes(31, patients),
        "(b) presidio-evaluator PresidioSentenceFaker": notes_eval.faker_notes(faker_sentences),
        "(c) hand-written notes (clinical_pipelines_tests/data/notes)": notes_eval.handwritten_notes(),
        # written by someone who never saw the engine; its misses were read on 2026-12-02 to improve the engine, so
        # since then it is a development set, not an unbiased figure
        "(d) development notes, once held out (clinical_pipelines_tests/data/notes_heldout)": (
            notes_eval.handwritten_notes(notes_eval.HELDOUT_DIR)
        ),
    }
    if notes_eval.HELDOUT2_DIR.is_dir():  # a second held-out set, by another writer who never saw the engine
        sets["(e) held-out hand-written notes, set 2 (clinical_pipelines_tests/data/notes_heldout2)"] = (
            notes_eval.handwritten_notes(notes_eval.HELDOUT2_DIR)
        )
    if notes_eval.HELDOUT3_DIR.is_dir():  # a third, written after the engine changes of 2026-12-02
        sets["(f) held-out hand-written notes, set 3 (clinical_pipelines_tests/data/notes_heldout3)"] = (
            notes_eval.handwritten_notes(notes_eval.HELDOUT3_DIR)
        )
    if notes_eval.DEV_DIR.is_dir():  # written to be read: its misses guide the engine, so it measures nothing unbiased
        sets["(g) development notes (clinical_pipelines_tests/data/notes_dev)"] = (
            notes_eval.handwritten_notes(notes_eval.DEV_DIR)
        )
    if i2b2 := notes_eval.i2b2_notes():  # real notes, surrogate identifiers, i2b2's tags: held out (misses unread)
        sets["(h) i2b2 2014 example notes shipped in philter-ucsf (held out)"] = i2b2
    ours = NoteDeidentifier(Pseudonymizer(KEY))
    presidio = notes_eval.out_of_the_box_presidio()
    for title, notes in sets.items():
        texts = [n.text for n in notes]
        mine = notes_eval.score(notes, [[(s, e) for _, s, e in r.spans] for r in ours.deidentify_many(texts)])
        theirs = notes_eval.score(notes, notes_eval.presidio_spans(presidio, texts))
        print(f"\nnotes {title}: {len(notes)} texts, {sum(mine.total[k] for k in notes_eval.PHI_KINDS)} identifiers")
        print(f"  {'kind':<35} {'ours':>7} {'presidio':>9}   n")
        kinds = [k for k in notes_eval.PHI_KINDS if mine.total[k]] + sorted(k for k in mine.total if "not PHI" in k)
        for kind in kinds:
            print(f"  recall {kind:<28} {mine.recall(kind):7.3f} {theirs.recall(kind):9.3f}   {mine.total[kind]}")
        print(f"  recall {'overall':<28} {mine.recall():7.3f} {theirs.recall():9.3f}")
        print(f"  precision{'':<26} {mine.precision():7.3f} {theirs.precision():9.3f}")
        if mine.phrases:
            print(f"  phrases kept{'':<23} {mine.phrases_kept_ratio():7.3f} {theirs.phrases_kept_ratio():9.3f}"
                  f"   {mine.phrases}")  # fmt: skip
    print(
        "  (an identifier counts as found only when all its word tokens were replaced; labels marked "
        "'not PHI' are reported, not counted)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes-patients", type=int, default=60)
    parser.add_argument("--faker-sentences", type=int, default=1500)
    parser.add_argument("--notes-only", action="store_true", help="skip the DICOM part")
    args = parser.parse_args()
    if args.notes_only:
        notes_quality(args.notes_patients, args.faker_sentences)
        return
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
    notes_quality(args.notes_patients, args.faker_sentences)


if __name__ == "__main__":
    main()
