"""Building a curated version of a spec: objects, then the manifest, then the version claim, then the catalog row.

Order is what makes faults and concurrency safe:

1. per-patient table slices are written write-once to ``curated/objects`` (content-addressed: two
   writers of one slice write the same bytes; the second is a no-op);
2. the manifest is written write-once at ``curated/manifests/<dataset>/<sha256>.json``;
3. the version number is claimed write-once at ``curated/versions/<dataset>/<number>``, holding the
   id; a run that loses the claim to different content rebuilds on top of the winner;
4. the catalog row is upserted.

A crash leaves at most objects and a manifest that nothing points to yet; the next run computes the
same manifest and completes steps 2-4. Before any write, the content is compared with the latest
version: nothing changed means the same version id and no new object.
"""

from __future__ import annotations

import contextlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clinical_pipelines.curate.manifest import (
    SCHEMA,
    Manifest,
    claim_number,
    content_of,
    latest_claim,
    load_manifest,
    write_manifest,
)
from clinical_pipelines.curate.provenance import provenance_resource
from clinical_pipelines.curate.quality import QualityResult, check_version
from clinical_pipelines.curate.records import read_deid_records
from clinical_pipelines.curate.select import Candidate, Selection, select
from clinical_pipelines.curate.spec import DatasetSpec
from clinical_pipelines.curate.splits import assign_split
from clinical_pipelines.deid.profile import PROFILE_NAME
from clinical_pipelines.landing.sources import PHI, PURPOSE_LABEL, read_classification
from clinical_pipelines.storage import ObjectAlreadyExists, ObjectStore
from clinical_pipelines.version import code_version as current_code_version
from clinical_pipelines.zones import curated_provenance_key

if TYPE_CHECKING:
    from clinical_pipelines.catalog.repository import Catalog

MAX_CLAIM_ATTEMPTS = 20
PIPELINE_PRINCIPAL = "pipeline"  # who promotes versions built outside a Dagster run (library use)


class NothingToBuild(Exception):
    """No de-identified object matches the spec: a version of nothing is not made."""


@dataclass
class BuildResult:
    """One build: the version it produced or found, whether it is new, what it wrote, its quality results."""

    spec: DatasetSpec
    manifest: Manifest
    created: bool
    objects_written: int = 0
    quality: list[QualityResult] = field(default_factory=list)
    tags: tuple[str, ...] = ()  # every policy tag of the version: its spec's and its own (version_tags)

    @property
    def version_id(self) -> str:
        """The version's identity (sha256 of the manifest bytes)."""
        return self.manifest.version_id

    @property
    def number(self) -> int:
        """The 1-based version number."""
        return self.manifest.number


def _row(c: Candidate, spec: DatasetSpec, labels: dict[str, str | None]) -> dict[str, Any]:
    return {
        "key": c.key,
        "sha256": c.sha256,
        "size": c.size,
        "modality": c.modality,
        "patient_id": c.patient_id,
        "split": assign_split(c.patient_id, spec.ratios, spec.split_seed),
        "label": labels.get(c.patient_id),
        "attributes": {**c.attributes, "drop": c.drop},
    }


def manifest_doc(
    spec: DatasetSpec, selection: Selection, *, number: int, previous: str | None, code_version: str
) -> dict[str, Any]:
    """The manifest document of ``selection`` as version ``number`` following ``previous``."""
    rows = sorted(
        (_row(c, spec, selection.labels) for c in selection.candidates), key=lambda r: (r["patient_id"], r["key"])
    )
    profile = selection.profile
    return {
        "schema": SCHEMA,
        "dataset": spec.name,
        "version": number,
        "parents": {"drops": list(selection.drops), "previous": previous},
        "spec_sha256": spec.sha256,
        "code_version": code_version,
        "deid": profile.to_doc() if profile else {"profile": None, "version": None, "options": []},
        "split": {"seed": spec.split_seed, "ratios": spec.ratios},
        "objects": rows,
    }


def _missing(store: ObjectStore, candidates: list[Candidate]) -> list[str]:
    """Keys of already-stored objects that are absent or of the wrong size (new slices are written later)."""
    stored = [c for c in candidates if c.data is None]

    def check(c: Candidate) -> str | None:
        info = store.head(c.key)
        return c.key if info is None or info.size != c.size else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sorted({k for k in pool.map(check, stored) if k is not None})


def _write_slices(store: ObjectStore, candidates: list[Candidate]) -> int:
    written = 0
    seen: set[str] = set()
    for c in candidates:
        if c.data is None or c.sha256 in seen:
            continue
        seen.add(c.sha256)
        try:
            store.put_bytes(c.key, c.data, write_once=True)
            written += 1
        except ObjectAlreadyExists:  # same address, same bytes
            pass
    return written


def _publish_provenance(store: ObjectStore, manifest: Manifest) -> None:
    data = json.dumps(provenance_resource(manifest), sort_keys=True, indent=1).encode()
    with contextlib.suppress(ObjectAlreadyExists):
        store.put_bytes(curated_provenance_key(manifest.dataset, manifest.version_id), data, write_once=True)


def deid_tag(profile: str | None, version: str | None) -> str:
    """``deid:<profile>@<version>``: the DICOM PS3.15 basic profile as ``ps3.15-e1-basic``, others slugged."""
    if profile is None:
        return "deid:none"
    slug = "ps3.15-e1-basic" if profile == PROFILE_NAME else re.sub(r"[^a-z0-9.]+", "-", profile.lower()).strip("-")
    return f"deid:{slug[:40]}@{version or 'unversioned'}"


def version_tags(store: ObjectStore, spec: DatasetSpec, doc: dict[str, Any]) -> tuple[str, ...]:
    """The policy tags of a version built from ``doc``'s drops: the spec's; each drop's classification at ingest
    without ``phi`` and its ``modality:`` labels (sensitivity such as ``pediatric`` travels on); and
    ``deid:<profile>@<version>``; and ``purpose:<p>`` for each purpose every classified drop's source allows. A drop
    ingested before classification existed adds ``classification:missing``."""
    tags = set(spec.policy_tags) | {deid_tag(doc["deid"]["profile"], doc["deid"]["version"])}
    purposes: set[str] | None = None
    for drop in doc["parents"]["drops"]:
        source, _, drop_id = str(drop).partition("/")
        found = read_classification(store, source, drop_id)
        if found is None:
            tags.add("classification:missing")
            continue
        tags.update(t for t in found.tags if t != PHI and not t.startswith("modality:"))
        purposes = set(found.purposes) if purposes is None else purposes & set(found.purposes)
    if purposes is not None:  # what every source of the version allows; purpose:none when they share none
        tags.update({f"{PURPOSE_LABEL}{p}" for p in purposes} or {f"{PURPOSE_LABEL}none"})
    return tuple(sorted(tags))


def _audit_promotion(catalog: Catalog, principal: str, manifest: Manifest, run_id: str | None) -> None:
    from clinical_pipelines.catalog.audit import AuditEntry, AuditLog

    detail = f"dataset={manifest.dataset} number={manifest.number} objects={len(manifest.objects)}"
    if run_id:
        detail += f" run={run_id}"
    entry = AuditEntry(principal, "promote.build-version", f"version:{manifest.version_id}", "allowed", detail=detail)
    AuditLog(catalog.engine).append(entry)


def build_version(
    store: ObjectStore,
    spec: DatasetSpec,
    *,
    catalog: Catalog | None = None,
    code_version: str | None = None,
    principal: str = PIPELINE_PRINCIPAL,
    run_id: str | None = None,
) -> BuildResult:
    """Build (or find) the version of ``spec`` over every passed de-identified drop in ``store``.

    Promises: the same inputs and spec give the same version id and write nothing; a manifest is
    written only after all its objects exist and is never overwritten; two concurrent builds of the
    same content agree on one version; the catalog (when given) gets the version's row last, and a new
    version's promotion is then recorded in the audit log (``promote.build-version`` by ``principal``).
    Raises :class:`NothingToBuild` when the spec selects no object.
    """
    selection = select(store, spec, read_deid_records(store))
    if not selection.candidates:
        raise NothingToBuild(f"no de-identified object matches spec {spec.name!r}")
    code = code_version or current_code_version()
    missing = _missing(store, selection.candidates)
    label_required = spec.cohort.label_available
    claim = latest_claim(store, spec.name)
    for _ in range(MAX_CLAIM_ATTEMPTS):
        number, previous = (claim[0] + 1, claim[1]) if claim else (1, None)
        doc = manifest_doc(spec, selection, number=number, previous=previous, code_version=code)
        if claim is not None:
            latest = load_manifest(store, spec.name, claim[1])
            if content_of(latest.doc) == content_of(doc):
                result = BuildResult(spec, latest, created=False, tags=version_tags(store, spec, latest.doc))
                result.quality = check_version(latest.doc, missing, label_required)
                if catalog is not None:
                    catalog.record_version(spec, latest, result.quality, result.tags)
                return result
        quality = check_version(doc, missing, label_required)
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} de-identified object(s) of spec {spec.name!r} are missing from the store, "
                f"e.g. {missing[0]}: no manifest written"
            )
        written = _write_slices(store, selection.candidates)
        manifest = write_manifest(store, doc)
        _publish_provenance(store, manifest)
        holder = claim_number(store, spec.name, number, manifest.version_id)
        if holder == manifest.version_id:
            tags = version_tags(store, spec, manifest.doc)
            if catalog is not None:
                catalog.record_version(spec, manifest, quality, tags)
                _audit_promotion(catalog, principal, manifest, run_id)
            return BuildResult(spec, manifest, created=True, objects_written=written, quality=quality, tags=tags)
        claim = (number, holder)  # another run took this number with other content: build on top of it
    raise RuntimeError(f"could not claim a version number for {spec.name!r} after {MAX_CLAIM_ATTEMPTS} attempts")
