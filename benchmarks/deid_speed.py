"""DICOM de-identification throughput against the plain read/write floor, in the same run.

    .venv/bin/python benchmarks/deid_speed.py [--files 1000] [--workers 2] [--repeat 3]

Generates --files synthetic 512x512 CT/MR slices with planted identifiers, then times:

- floor, in memory: ``pydicom.dcmread`` + ``save_as`` of every file's bytes, changing nothing;
- floor, folder to folder: the same loop reading each input file and writing it to an output folder
  (the like-for-like baseline of every folder-to-folder row: same reads, same writes, no process start);
- ours, one process: the PS3.15 Basic Profile (default options) via ``deidentify_bytes``;
- ours, CLI: ``clinical-pipelines deid dicom`` folder to folder, process start included, with 1
  worker (residual scan on, the default, and off) and with --workers processes (scan on).

Prints files/s, ratios to both floors and to the fastest peer's in-process API, and the planted
identifiers found in our outputs (must be 0). Peer tools (dicognito, pydicom/deid,
dicom-anonymizer) are compared when installed in the environment given by --peers-python
(``make bench-peers`` builds ``.venv-peers``); dicognito also through its API, one ``Anonymizer``
applied per file, read and written folder to folder, imports not timed.

Notes (--notes N generated notes, 0 to skip; --notes-only skips DICOM), against out-of-the-box
Presidio (default recognizers, the model's full spaCy pipeline, same model by path): one ``analyze``
plus one ``anonymize`` per note; best of --repeat interleaved rounds, like the DICOM rows:

- ours, one process: ``NoteDeidentifier.deidentify_many`` (NER-only spaCy, ``nlp.pipe`` batches);
- ours, --workers processes: ``clinical-pipelines deid notes`` folder to folder (process start,
  model load and file I/O included).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pydicom

from clinical_pipelines.deid.dicom import DicomDeidentifier
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

KEY = b"benchmark de-identification secret (32+ bytes)"
PEER_API = "peer: dicognito 0.19.0 (API, Anonymizer per file)"
FLOOR = "floor: dcmread + save_as, in memory (no change)"
FLOOR_FOLDER = "floor: dcmread + save_as, folder to folder"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--notes", type=int, default=300, help="generated notes for the notes comparison (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=None,
        help="python of a venv holding dicognito, deid and dicom-anonymizer (make bench-peers builds .venv-peers)",
    )
    parser.add_argument("--notes-only", action="store_true", help="only the notes comparison")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-deid-", dir=args.workdir or "."))
    if args.notes_only:
        try:
            env = dict(os.environ, CLINICAL_PIPELINES_DEID_KEY=base64.b64encode(KEY).decode())
            notes_speed(args.notes, args.workers, work, env, args.repeat)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        patients = max(1, args.files // 50)
        corpus = SynthCorpus(29, n_patients=patients, slices_per_series=-(-args.files // patients), notes_per_patient=0)
        files = [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"][: args.files]
        planted = [c.value for c in corpus.canaries() if len(c.value) >= 6 and c.kind not in ("date", "birth_date")]
        in_dir = work / "in"
        in_dir.mkdir()
        for i, data in enumerate(files):
            (in_dir / f"{i:05d}.dcm").write_bytes(data)
        megabytes = sum(map(len, files)) / 1e6
        print(f"{len(files)} DICOM files, {megabytes:.0f} MB, {len(planted)} planted identifiers")
        deid = DicomDeidentifier(Pseudonymizer(KEY))
        deid.deidentify_bytes(files[0])

        def floor() -> float:
            started = time.perf_counter()
            for data in files:
                pydicom.dcmread(io.BytesIO(data)).save_as(io.BytesIO(), enforce_file_format=True)
            return time.perf_counter() - started

        floor_out = work / "floor-out"
        floor_out.mkdir()
        in_paths = sorted(in_dir.iterdir())

        def floor_folder() -> float:
            # A fresh folder each round, as every CLI row writes into a new one (creating files costs more
            # than overwriting them).
            shutil.rmtree(floor_out)
            floor_out.mkdir()
            started = time.perf_counter()
            for path in in_paths:
                pydicom.dcmread(path).save_as(floor_out / path.name, enforce_file_format=True)
            return time.perf_counter() - started

        outputs: list[bytes] = []

        def ours() -> float:
            outputs.clear()
            started = time.perf_counter()
            for data in files:
                outputs.append(deid.deidentify_bytes(data)[0])
            return time.perf_counter() - started

        env = dict(os.environ, CLINICAL_PIPELINES_DEID_KEY=base64.b64encode(KEY).decode())
        cli = str(Path(sys.executable).parent / "clinical-pipelines")

        cli_outputs: dict[str, Path] = {}

        def ours_cli(workers: int, *flags: str) -> float:
            out = work / f"out-{workers}{''.join(flags)}"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run([cli, "deid", "dicom", str(in_dir), str(out), "--workers", str(workers), *flags],
                           env=env, check=True, capture_output=True)  # fmt: skip
            cli_outputs[f"CLI, {workers} worker(s) {' '.join(flags)}".strip()] = out
            return time.perf_counter() - started

        def peer_api(script: str, name: str) -> float:
            """A peer's in-process API: the script times its own loop (imports excluded) and prints seconds."""
            out = work / f"peer-{name}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            done = subprocess.run([str(args.peers_python), "-c", script, str(in_dir), str(out)], check=True,
                                  capture_output=True, text=True)  # fmt: skip
            peer_outputs[name] = out
            return float(done.stdout.strip().splitlines()[-1])

        peer_outputs: dict[str, Path] = {}

        def peer(name: str, command: list[str]) -> float:
            out = work / f"peer-{name}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            started = time.perf_counter()
            subprocess.run([arg.replace("{out}", str(out)) for arg in command], check=True, capture_output=True)
            peer_outputs[name] = out
            return time.perf_counter() - started

        peers: dict[str, object] = {}
        if args.peers_python:
            py = str(args.peers_python)
            deid_script = (
                "import sys, glob; from deid.dicom import replace_identifiers; "
                "replace_identifiers(dicom_files=sorted(glob.glob(sys.argv[1] + '/*.dcm')), output_folder=sys.argv[2], "
                "save=True, overwrite=True)"
            )
            dicognito_api = (
                "import sys, glob, os, time, pydicom; from dicognito.anonymizer import Anonymizer; "
                "files = sorted(glob.glob(sys.argv[1] + '/*.dcm')); started = time.perf_counter(); "
                "anonymizer = Anonymizer()\n"
                "for path in files:\n"
                "    ds = pydicom.dcmread(path); anonymizer.anonymize(ds); "
                "ds.save_as(os.path.join(sys.argv[2], os.path.basename(path)))\n"
                "print(time.perf_counter() - started)"
            )
            peers = {
                PEER_API: lambda: peer_api(dicognito_api, "dicognito-api"),
                "peer: dicognito 0.19.0 (CLI)": lambda: peer(
                    "dicognito", [py, "-m", "dicognito", "--quiet", "--output-directory", "{out}", str(in_dir)]
                ),
                "peer: pydicom/deid 0.4.13 (API)": lambda: peer("deid", [py, "-c", deid_script, str(in_dir), "{out}"]),
                "peer: dicom-anonymizer 2.1.0 (CLI)": lambda: peer(
                    "dicom-anonymizer", [str(Path(py).parent / "dicom-anonymizer"), str(in_dir), "{out}"]
                ),
            }

        variants = {
            **peers,
            FLOOR: floor,
            FLOOR_FOLDER: floor_folder,
            "ours, 1 process (in memory)": ours,
            "ours, CLI folder to folder, 1 worker": lambda: ours_cli(1),
            "ours, CLI folder to folder, 1 worker, --no-residual-scan": lambda: ours_cli(1, "--no-residual-scan"),
            f"ours, CLI folder to folder, {args.workers} workers": lambda: ours_cli(args.workers),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, run in variants.items():
                times[name].append(run())
        base, base_folder = min(times[FLOOR]), min(times[FLOOR_FOLDER])
        peer_base = min(times[PEER_API]) if PEER_API in times else None
        print(f"results, best of {args.repeat} interleaved rounds (x floor: in memory / folder to folder):")
        for name, t in times.items():
            vs_peer = f"   {peer_base / min(t):4.2f}x dicognito API" if peer_base else ""
            print(f"  {name:<58} {len(files) / min(t):7.0f} files/s   {base / min(t):4.2f}x / "
                  f"{base_folder / min(t):4.2f}x floor{vs_peer}")  # fmt: skip
        found_in_inputs = planted_left(files, planted)  # the same search finds them before de-identification
        print(f"planted identifiers in the inputs: {found_in_inputs} of {len(planted)}")
        print(f"planted identifiers left in our output: {planted_left(outputs, planted)} of {len(planted)}")
        for name, folder in cli_outputs.items():
            written = sum(1 for _ in folder.iterdir())
            left = planted_left((p.read_bytes() for p in folder.iterdir()), planted)
            print(f"planted identifiers left in our {name} output: {left} of {len(planted)} ({written} files written)")
        for name, folder in peer_outputs.items():
            peer_left = planted_left((p.read_bytes() for p in folder.rglob("*") if p.is_file()), planted)
            print(f"planted identifiers left in {name}'s output: {peer_left} of {len(planted)}")
        if args.notes:
            notes_speed(args.notes, args.workers, work, env, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)



# A planted value (text, no control characters, >= 6 bytes) can only occur inside such a run of bytes.
_TEXT_RUN = re.compile(rb"[^\x00-\x1f]{6,}")


def planted_left(blobs: Iterable[bytes], planted: list[str]) -> int:
    """How many ``planted`` values occur anywhere in ``blobs``: exact, as a search of every byte would be, but
    searching only the runs of text bytes (a few tenths of a percent of a DICOM file) instead of all of it."""
    text = b"\n".join(run for blob in blobs for run in _TEXT_RUN.findall(blob))
    return sum(1 for value in planted if value.encode() in text)


def notes_speed(count: int, workers: int, work: Path, env: dict[str, str], repeat: int = 1) -> None:
    """Naive per-note Presidio loop vs our batched engine and the multi-process CLI, same notes."""
    from clinical_pipelines.deid.notes import LANGUAGE, NoteDeidentifier

    corpus = SynthCorpus(31, n_patients=max(1, count // 2), slices_per_series=1, rows=16, columns=16,
                         notes_per_patient=2)  # fmt: skip
    texts = [f.data.decode() for d in corpus.iter_drops() for f in d.files if f.modality == "notes"][:count]
    folder = work / "notes-in"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i:05d}.txt").write_text(text, encoding="utf-8")
    print(f"\n{len(texts)} notes, {sum(map(len, texts)) / 1e3:.0f} kB, best of {repeat} interleaved rounds")
    from presidio_anonymizer import AnonymizerEngine

    from clinical_pipelines_tests.notes_eval import out_of_the_box_presidio

    # Out-of-the-box Presidio: default recognizers, the model's full pipeline, the same spaCy model by path.
    presidio, anonymizer = out_of_the_box_presidio(), AnonymizerEngine()
    presidio.analyze(text=texts[0], language=LANGUAGE)
    ours = NoteDeidentifier(Pseudonymizer(KEY))
    ours.deidentify(texts[0])
    cli = str(Path(sys.executable).parent / "clinical-pipelines")

    def timed(run: object) -> float:
        started = time.perf_counter()
        run()  # type: ignore[operator]
        return time.perf_counter() - started

    def naive_loop() -> None:
        for text in texts:
            anonymizer.anonymize(text=text, analyzer_results=presidio.analyze(text=text, language=LANGUAGE))

    def via_cli(n: int) -> None:
        out = work / "notes-out"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([cli, "deid", "notes", str(folder), str(out), "--workers", str(n)], env=env, check=True,
                       capture_output=True)  # fmt: skip

    from clinical_pipelines.deid.batch import NotesPool

    pool = NotesPool(KEY, workers)  # started and warmed outside the timing, like the engines above
    variants = {
        "out-of-the-box Presidio: analyze + anonymize per note": naive_loop,
        "ours, 1 process (batched, NER only)": lambda: ours.deidentify_many(texts),
        f"ours, {workers} warm worker processes": lambda: pool.deidentify(texts),
        "ours, CLI folder to folder, 1 worker": lambda: via_cli(1),
        f"ours, CLI folder to folder, {workers} workers": lambda: via_cli(workers),
    }
    seconds: dict[str, float] = {}
    for _ in range(repeat):  # interleaved rounds, best of each: this machine kind varies by tens of percent
        for name, run in variants.items():
            seconds[name] = min(seconds.get(name, float("inf")), timed(run))
    pool.close()
    base = seconds["out-of-the-box Presidio: analyze + anonymize per note"]
    for name, t in seconds.items():
        print(f"  {name:<50} {len(texts) / t:7.1f} notes/s   {base / t:4.2f}x Presidio")


if __name__ == "__main__":
    main()
