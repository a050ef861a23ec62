"""De-identification engines are built once per process and secret, and shared by every drop."""

from __future__ import annotations

import os

from clinical_pipelines.deid.stage import warm_engines


def test_same_secret_same_engines_other_secret_other_engines() -> None:
    key, other = os.urandom(32), os.urandom(32)
    first = warm_engines(key)
    assert warm_engines(bytes(key)) is first  # a later drop (a fresh copy of the key) gets the warm engines
    pseudonymizer, dicom, notes = first
    assert dicom.pseudonymizer is pseudonymizer and notes.pseudonymizer is pseudonymizer
    second = warm_engines(other)
    assert second is not first
    assert second[0].patient_id("MRN123") != pseudonymizer.patient_id("MRN123")  # keyed by their own secret


def test_warm_engines_give_the_outputs_fresh_ones_give() -> None:
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer

    key = os.urandom(32)
    warm, fresh = warm_engines(key)[0], Pseudonymizer(key)
    for value in ("MRN123", "1.2.840.10008.1", "MRN999"):
        assert warm.patient_id(value) == fresh.patient_id(value)
        assert warm.uid(value) == fresh.uid(value)
