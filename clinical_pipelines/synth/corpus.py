"""The corpus: seeded patients, a cheap eager plan, and lazily rendered drops."""

from __future__ import annotations

import pathlib
import random
from collections.abc import Iterator

from clinical_pipelines.landing.manifest import is_safe_name
from clinical_pipelines.synth.canaries import CanaryRecorder, write_canaries_json
from clinical_pipelines.synth.dicom import record_series, render_series
from clinical_pipelines.synth.models import Canary, Patient, SynthDrop, SynthFile
from clinical_pipelines.synth.notes import render_note
from clinical_pipelines.synth.patients import REFERENCE_DATE, make_patients
from clinical_pipelines.synth.plan import DropPlan, PlanParams, build_plan
from clinical_pipelines.synth.tabular import render_labs, render_outcomes


def _drop_files(plan: DropPlan, rec: CanaryRecorder, *, pixels: bool) -> Iterator[SynthFile]:
    """Yield the files of ``plan``; with ``pixels=False`` DICOM is only recorded, not encoded."""
    next_number = {"CT": 1, "MR": 1}
    for spec in plan.series:
        if pixels:
            mod = spec.exam.protocol.modality
            yield from render_series(spec, rec, f"dicom/{mod.lower()}", next_number[mod])
            next_number[mod] += spec.n_slices
        else:
            record_series(spec, rec)
    for i, note in enumerate(plan.notes, start=1):
        yield SynthFile(f"notes/note-{i:04d}.txt", render_note(note, rec), "notes")
    if plan.tabular is not None:
        yield SynthFile("tabular/labs.csv", render_labs(plan.tabular, rec), "tabular")
        yield SynthFile("tabular/outcomes.csv", render_outcomes(plan.tabular, rec), "tabular")


class SynthCorpus:
    """A reproducible synthetic corpus: the same seed and sizes give byte-identical drops.

    Patients and the drop plan (all identifiers, dates, UIDs) are drawn eagerly from
    ``random.Random(seed)``; pixels, note prose and lab values are rendered one drop at a
    time by :meth:`iter_drops`. Patients are assigned to ``sources`` round-robin; each
    source gets imaging drops (at most ``series_per_drop`` series each, CT and MR
    alternating) followed by one drop of notes and CSV tables.
    """

    reference_date = REFERENCE_DATE

    def __init__(
        self,
        seed: int = 7,
        *,
        n_patients: int = 6,
        sources: tuple[str, ...] = ("hospital-a", "hospital-b"),
        dicom_series_per_patient: int = 1,
        slices_per_series: int = 4,
        notes_per_patient: int = 2,
        rows: int = 512,
        columns: int = 512,
        series_per_drop: int = 4,
    ) -> None:
        if not sources or len(set(sources)) != len(sources):
            raise ValueError("sources must be non-empty and unique")
        for source in sources:
            if not is_safe_name(source):
                raise ValueError(f"invalid source {source!r}")
        if min(dicom_series_per_patient, notes_per_patient) < 0:
            raise ValueError("per-patient counts must be >= 0")
        if slices_per_series < 1 or series_per_drop < 1:
            raise ValueError("slices_per_series and series_per_drop must be >= 1")
        if not (16 <= rows <= 4096 and 16 <= columns <= 4096):
            raise ValueError("rows and columns must be in [16, 4096]")
        self.seed = seed
        rng = random.Random(seed)
        self.patients: list[Patient] = make_patients(rng, n_patients)
        params = PlanParams(
            sources=tuple(sources),
            dicom_series_per_patient=dicom_series_per_patient,
            slices_per_series=slices_per_series,
            notes_per_patient=notes_per_patient,
            rows=rows,
            columns=columns,
            series_per_drop=series_per_drop,
        )
        self._plans: list[DropPlan] = build_plan(rng, self.patients, params)
        self._canaries: list[Canary] | None = None

    def drop_keys(self) -> list[tuple[str, str]]:
        """Return ``(source, drop_id)`` of every drop, in :meth:`iter_drops` order."""
        return [(p.source, p.drop_id) for p in self._plans]

    def iter_drops(self) -> Iterator[SynthDrop]:
        """Yield the drops one at a time; only the current drop's bytes are held in memory."""
        for plan in self._plans:
            files = tuple(_drop_files(plan, CanaryRecorder(), pixels=True))
            yield SynthDrop(source=plan.source, drop_id=plan.drop_id, files=files)

    def canaries(self) -> list[Canary]:
        """Return every identifier planted in any drop, deduplicated, in first-planted order.

        Computed by replaying the generators without encoding pixels, so it is exactly the
        set of values written by :meth:`iter_drops`.
        """
        if self._canaries is None:
            rec = CanaryRecorder()
            for plan in self._plans:
                for _ in _drop_files(plan, rec, pixels=False):
                    pass
            self._canaries = rec.canaries()
        return list(self._canaries)

    def write_canaries(self, path: pathlib.Path) -> None:
        """Write :meth:`canaries` to ``path`` as a JSON list of ``{kind, value, patient_mrn}``."""
        write_canaries_json(pathlib.Path(path), self.canaries())
