"""Reproducible synthetic clinical data: DICOM series, notes and CSVs, plus planted canaries.

Plain Python (no Dagster). Everything derives from an integer seed; the same seed gives
byte-identical drops and canaries.
"""

from clinical_pipelines.synth.canaries import CanaryRecorder
from clinical_pipelines.synth.corpus import SynthCorpus
from clinical_pipelines.synth.models import Canary, Patient, SynthDrop, SynthFile
from clinical_pipelines.synth.names import RESTRICTED_ZIP3
from clinical_pipelines.synth.patients import REFERENCE_DATE
from clinical_pipelines.synth.uids import UID_ROOT

__all__ = [
    "REFERENCE_DATE",
    "RESTRICTED_ZIP3",
    "UID_ROOT",
    "Canary",
    "CanaryRecorder",
    "Patient",
    "SynthCorpus",
    "SynthDrop",
    "SynthFile",
]
