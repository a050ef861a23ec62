"""Reading what the de-identified stage wrote: per-drop records (pseudonyms, hashes, sizes; no PHI)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from clinical_pipelines.deid.profile import PROFILE_NAME
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.zones import CURATED


@dataclass(frozen=True)
class DeidProfile:
    """The de-identification profile a drop went through, split into name, version and options."""

    profile: str
    version: str
    options: tuple[str, ...]

    def to_doc(self) -> dict[str, Any]:
        """The manifest's ``deid`` block."""
        return {"profile": self.profile, "version": self.version, "options": sorted(self.options)}


@dataclass(frozen=True)
class DeidRecord:
    """One drop's de-identified output for one modality (``dicom``, ``notes`` or ``tabular``)."""

    modality: str
    source: str
    drop_id: str
    profile: DeidProfile
    passed: bool
    items: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def drop(self) -> str:
        """``<source>/<drop_id>``: the drop partition key."""
        return f"{self.source}/{self.drop_id}"


def parse_profile(text: str) -> DeidProfile:
    """Split a record's profile string (``<name> <version>; options: a, b``) into its parts."""
    head, _, options = text.partition("; options:")
    head = head.strip()
    if head.startswith(PROFILE_NAME):
        name, version = PROFILE_NAME, head[len(PROFILE_NAME) :].strip()
    else:
        name, _, version = head.rpartition(" ")
        name = name or head
    return DeidProfile(name, version, tuple(sorted(o.strip() for o in options.split(",") if o.strip())))


def read_deid_records(store: ObjectStore) -> list[DeidRecord]:
    """Every de-identification record in the store, in key order (a drop's modalities side by side)."""
    records = []
    for info in store.list(f"{CURATED}/deid/"):
        if not info.key.endswith(".json"):
            continue
        doc = json.loads(read_all(store, info.key))
        records.append(
            DeidRecord(
                modality=str(doc["modality"]),
                source=str(doc["source"]),
                drop_id=str(doc["drop_id"]),
                profile=parse_profile(str(doc.get("profile", ""))),
                passed=bool(doc.get("passed")),
                items=tuple(doc.get("items", ())),
            )
        )
    return records
