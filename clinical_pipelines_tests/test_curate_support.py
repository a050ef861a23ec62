"""Shared helpers of the curate/catalog/manifest tests (no tests here): de-identified stage output written the
way the stage writes it, spec text, and a fresh PostgreSQL database on the machine's server."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from clinical_pipelines.curate.spec import DatasetSpec, parse_spec
from clinical_pipelines.deid.profile import DEFAULT_OPTIONS, PROFILE_NAME, PROFILE_VERSION
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.zones import curated_object_key, deid_record_key

PROFILE = f"{PROFILE_NAME} {PROFILE_VERSION}; options: {', '.join(sorted(DEFAULT_OPTIONS))}"

SPEC_TEXT = """\
name: chest_ct
owner: imaging-research
purpose: Chest CT of adults with discharge outcome.
modalities: [dicom, outcomes]
cohort:
  imaging_modality: [CT]
  body_part: [CHEST]
  age_band: {min: 18, max: 89}
  date_window: {start: 2020-01-01, end: 2024-12-31}
  label_available: true
labels:
  table: outcomes
  column: outcome
  map: {deceased: deceased, readmitted_30d: readmitted}
  default: other
  order_by: discharge_date
split:
  seed: 7
  ratios: {train: "0.6", val: "0.2", test: "0.2"}
policy_tags: [research, imaging]
retention: research-7y
"""


def spec(text: str = SPEC_TEXT) -> DatasetSpec:
    """A spec parsed from ``text`` (default: the test spec)."""
    return parse_spec(text, "test.yaml")


@dataclass
class Patient:
    """A synthetic de-identified patient."""

    pid: str
    modality: str = "CT"
    body_part: str = "CHEST"
    age: str = "045Y"
    study_date: str = "20220315"
    outcome: str = "deceased"
    series: int = 2


@dataclass
class FakeDrop:
    """What the de-identified stage would have written for one drop."""

    source: str
    drop_id: str
    patients: list[Patient] = field(default_factory=list)
    passed: bool = True
    salt: str = ""


def _put(store: ObjectStore, data: bytes) -> dict[str, object]:
    sha = hashlib.sha256(data).hexdigest()
    if store.head(curated_object_key(sha)) is None:
        store.put_bytes(curated_object_key(sha), data, write_once=True)
    return {"sha256": sha, "size": len(data)}


def _record(store: ObjectStore, drop: FakeDrop, modality: str, items: list[dict[str, object]]) -> None:
    doc = {"modality": modality, "source": drop.source, "drop_id": drop.drop_id, "profile": PROFILE,
           "passed": drop.passed, "items": sorted(items, key=lambda i: str(i["sha256"]))}  # fmt: skip
    store.put_bytes(deid_record_key(modality, drop.source, drop.drop_id), json.dumps(doc, sort_keys=True).encode())


def write_deid_drop(store: ObjectStore, drop: FakeDrop) -> None:
    """DICOM objects per patient, one note each, and labs/outcomes tables holding every patient of the drop."""
    dicom, notes = [], []
    for p in drop.patients:
        for s in range(p.series):
            data = f"DICM fake {drop.drop_id} {p.pid} series {s} {drop.salt}".encode() * 40
            attributes = {"modality": p.modality, "body_part": p.body_part, "study_date": p.study_date,
                          "patient_age": p.age, "patient_sex": "F", "study_uid": f"2.25.{s}1",
                          "series_uid": f"2.25.{s}2"}  # fmt: skip
            dicom.append({**_put(store, data), "kind": "dicom", "patient_ids": [p.pid], "attributes": attributes})
        note = f"[NAME] seen on 2022-03-01 {drop.drop_id} {p.pid} {drop.salt}".encode()
        notes.append({**_put(store, note), "kind": "notes", "patient_ids": [p.pid], "attributes": {}})
    outcomes = "patient_id,admission_date,discharge_date,outcome,age_at_admission,sex\n" + "".join(
        f"{p.pid},2022-03-01,2022-03-0{i + 2},{p.outcome},{int(p.age[:3])},F\n" for i, p in enumerate(drop.patients)
    )
    labs = "patient_id,collected_at,test_code,value,unit,zip3,age_at_collection,sex\n" + "".join(
        f"{p.pid},2022-03-02,GLU,{90 + i},mg/dL,021,{int(p.age[:3])},F\n" for i, p in enumerate(drop.patients)
    )
    tabular = []
    for kind, text in (("outcomes", outcomes), ("labs", labs)):
        ids = sorted({p.pid for p in drop.patients})
        tabular.append({**_put(store, text.encode()), "kind": kind, "patient_ids": ids, "attributes": {}})
    _record(store, drop, "dicom", dicom)
    _record(store, drop, "notes", notes)
    _record(store, drop, "tabular", tabular)


def standard_drops() -> list[FakeDrop]:
    """Two drops: six matching adults (CT chest in window), plus patients each failing one criterion."""
    ok = [Patient(f"PSN-OKPATIENT{i:04d}", outcome=("deceased", "readmitted_30d", "discharged_home")[i % 3])
          for i in range(6)]  # fmt: skip
    odd = [
        Patient("PSN-MRPATIENT0001", modality="MR", body_part="HEAD"),
        Patient("PSN-CHILDPATIENT01", age="010Y"),
        Patient("PSN-OLDSTUDY000001", study_date="20190101"),
        Patient("PSN-NOLABEL0000001", outcome=""),
    ]
    return [FakeDrop("site-a", "d1", ok[:3] + odd[:2]), FakeDrop("site-b", "d1", ok[3:] + odd[2:])]
