"""Recording of planted identifiers ("canaries") at the moment they are written."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable

from clinical_pipelines.storage.local import LocalObjectStore
from clinical_pipelines.synth.models import Canary

#: Shorter values would match unrelated bytes by chance, so they are never recorded.
MIN_CANARY_LENGTH = 4


class CanaryRecorder:
    """Collects canaries in first-planted order, deduplicated by (kind, value, patient_mrn)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str | None], Canary] = {}

    def plant(self, kind: str, value: str, patient_mrn: str | None) -> str:
        """Record ``value`` as planted and return it unchanged, for inline use."""
        if len(value) < MIN_CANARY_LENGTH:
            raise ValueError(f"canary {kind}={value!r} is too short to be meaningful")
        key = (kind, value, patient_mrn)
        if key not in self._seen:
            self._seen[key] = Canary(kind=kind, value=value, patient_mrn=patient_mrn)
        return value

    def canaries(self) -> list[Canary]:
        """Return the recorded canaries in first-planted order."""
        return list(self._seen.values())


def canaries_json_bytes(canaries: Iterable[Canary]) -> bytes:
    """Serialise canaries as a JSON list of ``{"kind", "value", "patient_mrn"}`` objects."""
    rows = [c.to_json() for c in canaries]
    return json.dumps(rows, indent=2, sort_keys=True).encode() + b"\n"


def write_canaries_json(path: pathlib.Path, canaries: Iterable[Canary]) -> None:
    """Atomically write the canaries JSON list to ``path``."""
    path = pathlib.Path(path).absolute()
    LocalObjectStore(path.parent, fsync=False).put_bytes(path.name, canaries_json_bytes(canaries))
