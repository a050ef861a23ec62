"""Residual-scan false positives on DICOM files this project did not write (pydicom's bundled test
files and pydicom-data), de-identified with the default profile.

    .venv/bin/python benchmarks/dicom_residual_fp.py [--limit N] [--show]

For every output the stage's re-analysis is run (Presidio with the clinical recognizers on every
remaining text value, Person Name values other than our pseudonyms) and reported per rule: how many
outputs would be quarantined as ``residual_phi`` when spaCy's PERSON guesses are ignored, counted on
values longer than a code (the stage's rule), or counted everywhere; how many the known-identifier
search (removed values of the original found in the output) would stop; and how many the stage's own
findings engine (``deid.findings.DicomFindings``, both searches) holds back. ``--show`` lists the
values that produced findings (public test data; never run it on real data).
"""

from __future__ import annotations

import argparse
import io
import time
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier
from clinical_pipelines.deid.findings import DicomFindings
from clinical_pipelines.deid.notes import NoteDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.residual import (
    dicom_identifiers,
    dicom_text_values,
    foreign_names,
    longer_than_a_code,
    residual_entities,
    scan,
)

KEY = b"residual false-positive benchmark secret, 32+ bytes"
RULES = ("no NER PERSON", "NER PERSON on values longer than a code (stage)", "NER PERSON everywhere")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="at most this many files (0: all)")
    parser.add_argument("--show", action="store_true", help="print the values with findings (public data only)")
    args = parser.parse_args()
    paths = sorted(p for p in get_testdata_files() if Path(p).is_file() and not p.endswith((".json", ".txt", ".gz")))
    paths = paths[: args.limit] if args.limit else paths
    pseudonymizer = Pseudonymizer(KEY)
    deid = DicomDeidentifier(pseudonymizer)
    notes = NoteDeidentifier(pseudonymizer)
    findings = DicomFindings(deid, lambda: notes.analyze_many)  # what the stage and the CLI run
    started = time.perf_counter()
    refused: Counter[str] = Counter()
    outputs: list[tuple[str, set[str], set[str]]] = []
    known: Counter[str] = Counter()  # the stage's known-identifier search: originals' removed values in the output
    known_paths: set[str] = set()
    stage_paths: set[str] = set()  # held back by the stage's own findings engine
    for path in paths:
        data = Path(path).read_bytes()
        try:
            pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        except Exception:
            refused["not DICOM / unreadable"] += 1
            continue
        try:
            out, _ = deid.deidentify_bytes(data)
        except DeidRejected as rejected:
            refused[rejected.reason] += 1
            continue
        names, texts = dicom_text_values(out)
        outputs.append((path, names, texts))
        if findings(data, out):
            stage_paths.add(path)
        hits = scan(out, dicom_identifiers(data, deid.profile.actions))
        known.update(hits)
        if hits:
            known_paths.add(path)
    distinct = sorted({t for _, _, texts in outputs for t in texts})
    analysed = dict(zip(distinct, notes.analyze_many(distinct), strict=True))
    quarantined: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {rule: Counter() for rule in RULES}
    shown: Counter[tuple[str, str]] = Counter()
    for _path, names, texts in outputs:
        per_rule: dict[str, Counter[str]] = {rule: Counter() for rule in RULES}
        if foreign_names(names):
            for rule in RULES:
                per_rule[rule]["presidio:PN"] += foreign_names(names)
        for text in texts:
            results = analysed[text]
            for rule, ner in zip(RULES, (False, longer_than_a_code(text), True), strict=True):
                found = residual_entities(text, results, ner_persons=ner, in_context=False)
                per_rule[rule].update(found)
                if found and rule == RULES[1] and args.show:
                    shown[(text, ",".join(sorted(found)))] += 1
        for rule in RULES:
            if per_rule[rule]:
                quarantined[rule] += 1
                kinds[rule].update(per_rule[rule])
    print(f"{len(paths)} files, {len(outputs)} de-identified ({dict(refused)} refused), "
          f"{len(distinct)} distinct text values, {time.perf_counter() - started:.0f} s")  # fmt: skip
    label = "known-identifier search (whatever the rule)"
    print(f"  {label:<50} {len(known_paths):4d} of {len(outputs)} outputs quarantined  {dict(known)}")
    for rule in RULES:
        print(f"  {rule:<50} {quarantined[rule]:4d} of {len(outputs)} outputs quarantined  {dict(kinds[rule])}")
    label = "the stage (deid.findings.DicomFindings: both searches)"
    print(f"  {label:<50} {len(stage_paths):4d} of {len(outputs)} outputs quarantined")
    for (text, found), count in sorted(shown.items()):
        print(f"    {count:3d}x {found:<28} {text[:90]!r}")


if __name__ == "__main__":
    main()
