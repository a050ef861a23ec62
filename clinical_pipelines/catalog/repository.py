"""Writing to and reading from the catalog: versions with their governance, quality, lineage and training runs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.db import make_engine, migrate, safe_url
from clinical_pipelines.catalog.models import (
    Dataset,
    DatasetPolicyTag,
    LineageEdge,
    ObjectSummary,
    Owner,
    PolicyTag,
    Project,
    QualityCheckResult,
    RetentionClass,
    TrainingRun,
    TrainingRunVersion,
    Version,
    VersionFacet,
    VersionTag,
    utcnow,
)
from clinical_pipelines.catalog.tags import tags_of
from clinical_pipelines.curate.select import age_years
from clinical_pipelines.landing.sources import restrictive

if TYPE_CHECKING:
    from clinical_pipelines.curate.manifest import Manifest
    from clinical_pipelines.curate.quality import QualityResult
    from clinical_pipelines.curate.spec import DatasetSpec

PHI_STATUS = "de-identified"
_HEX64 = re.compile(r"[0-9a-f]{64}")
AGE_TOP_CODE = 90  # "90+"


class CatalogError(LookupError):
    """A dataset, version or run the catalog does not know."""


@dataclass(frozen=True)
class VersionRef:
    """A version as the catalog knows it."""

    dataset: str
    number: int
    version_id: str
    manifest_key: str
    store_url: str


def _facets(spec: DatasetSpec, manifest: Manifest) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    """Searchable values and ranges observed in a manifest (modalities, body parts, ages, study dates, labels)."""
    facets: set[tuple[str, str]] = set()
    ages: list[int] = []
    dates: list[str] = []
    for row in manifest.objects:
        facets.add(("modality", row["modality"]))
        attributes = row.get("attributes") or {}
        if row["modality"] == "dicom":
            if attributes.get("modality"):
                facets.add(("imaging_modality", attributes["modality"].upper()))
            if attributes.get("body_part"):
                facets.add(("body_part", attributes["body_part"].upper()))
            if attributes.get("study_date"):
                dates.append(attributes["study_date"])
            years = age_years(attributes.get("patient_age", ""))
            if years is not None:
                ages.append(years)
        for value in attributes.get("ages", "").split(","):
            years = age_years(value) if value else None
            if years is not None:
                ages.append(years)
        if row.get("label") is not None:
            facets.add(("label", str(row["label"])))
    if spec.cohort.age_band is not None:
        facets.add(("age_band", spec.cohort.age_band.label()))
    ages = [min(a, AGE_TOP_CODE) for a in ages]  # Safe Harbor: no age above 89 leaves as such
    ranges = {
        "age_min": min(ages) if ages else None,
        "age_max": max(ages) if ages else None,
        "date_min": min(dates) if dates else None,
        "date_max": max(dates) if dates else None,
    }
    return facets, ranges


class Catalog:
    """The catalog over one database (migrated to the newest schema on open)."""

    def __init__(self, engine: Engine, *, store_url: str = "") -> None:
        self.engine = engine
        self.store_url = store_url

    @classmethod
    def open(cls, url: str, *, store_url: str = "") -> Catalog:
        """Connect to ``url`` and migrate it; ``store_url`` is recorded with versions (where their objects live)."""
        engine = make_engine(url)
        migrate(engine)
        return cls(engine, store_url=store_url)

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return safe_url(self.engine.url)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- writes --------------------------------------------------------------------------------

    def _dataset(self, session: Session, spec: DatasetSpec) -> Dataset:
        owner = session.scalar(select(Owner).where(Owner.name == spec.owner))
        if owner is None:
            owner = Owner(name=spec.owner)
            session.add(owner)
        if session.get(RetentionClass, spec.retention) is None:
            session.add(RetentionClass(name=spec.retention))
        if session.get(Project, spec.project_name) is None:
            session.add(Project(name=spec.project_name))
        session.flush()
        dataset = session.scalar(select(Dataset).where(Dataset.name == spec.name))
        spec_json = json.dumps(spec.to_doc(), sort_keys=True)
        if dataset is None:
            dataset = Dataset(name=spec.name, owner_id=owner.id, purpose=spec.purpose, retention_class=spec.retention,
                              spec_sha256=spec.sha256, spec_json=spec_json, project=spec.project_name)  # fmt: skip
            session.add(dataset)
        else:
            dataset.owner_id, dataset.purpose, dataset.retention_class = owner.id, spec.purpose, spec.retention
            dataset.spec_sha256, dataset.spec_json, dataset.updated_at = spec.sha256, spec_json, utcnow()
            dataset.project = spec.project_name
        session.flush()
        session.execute(delete(DatasetPolicyTag).where(DatasetPolicyTag.dataset_id == dataset.id))
        for name in sorted(spec.policy_tags):
            tag = session.scalar(select(PolicyTag).where(PolicyTag.name == name))
            if tag is None:
                tag = PolicyTag(name=name)
                session.add(tag)
                session.flush()
            session.add(DatasetPolicyTag(dataset_id=dataset.id, tag_id=tag.id))
        return dataset

    def _edge(self, session: Session, src: tuple[str, str], dst: tuple[str, str]) -> None:
        exists = session.scalar(
            select(LineageEdge.id).where(
                LineageEdge.src_kind == src[0], LineageEdge.src_id == src[1],
                LineageEdge.dst_kind == dst[0], LineageEdge.dst_id == dst[1],
            )
        )  # fmt: skip
        if exists is None:
            session.add(LineageEdge(src_kind=src[0], src_id=src[1], dst_kind=dst[0], dst_id=dst[1]))

    def record_version(self, spec: DatasetSpec, manifest: Manifest, quality: list[QualityResult],
                       tags: tuple[str, ...] | list[str] = ()) -> None:  # fmt: skip
        """Upsert the dataset's governance, the version row, its summaries, facets, quality results and lineage.

        Idempotent: recording the same version again refreshes governance and quality, nothing more.
        Two processes recording the same version at once end with one row.
        """
        for attempt in range(3):
            try:
                self._record(spec, manifest, quality, tags)
                return
            except IntegrityError:  # a concurrent writer inserted the same rows first: go again, as an update
                if attempt == 2:
                    raise

    def _record(self, spec: DatasetSpec, manifest: Manifest, quality: list[QualityResult],
                tags: tuple[str, ...] | list[str]) -> None:  # fmt: skip
        doc = manifest.doc
        with Session(self.engine) as session, session.begin():
            dataset = self._dataset(session, spec)
            version = session.get(Version, manifest.version_id)
            if version is None:
                facets, ranges = _facets(spec, manifest)
                labelled = {o["patient_id"] for o in manifest.objects if o.get("label") is not None}
                session.add(
                    Version(
                        id=manifest.version_id, dataset_id=dataset.id, number=manifest.number,
                        previous_id=doc["parents"]["previous"], manifest_key=manifest.key, store_url=self.store_url,
                        spec_sha256=doc["spec_sha256"], code_version=doc["code_version"],
                        deid_profile=doc["deid"]["profile"], deid_version=doc["deid"]["version"],
                        deid_options=json.dumps(doc["deid"]["options"]), phi_status=PHI_STATUS,
                        objects=len(manifest.objects), bytes=manifest.total_bytes, patients=manifest.patients,
                        labelled_patients=len(labelled), **ranges,
                    )
                )  # fmt: skip
                session.flush()
                for facet, value in sorted(facets):
                    session.add(VersionFacet(version_id=manifest.version_id, facet=facet, value=value))
                summary: dict[tuple[str, str], list[Any]] = {}
                for row in manifest.objects:
                    entry = summary.setdefault((row["modality"], row["split"]), [0, 0, set()])
                    entry[0] += 1
                    entry[1] += int(row["size"])
                    entry[2].add(row["patient_id"])
                for (modality, split), (count, size, patients) in sorted(summary.items()):
                    session.add(ObjectSummary(version_id=manifest.version_id, modality=modality, split=split,
                                              objects=count, bytes=size, patients=len(patients)))  # fmt: skip
            if tags:  # the version's own tags, from its drops' classification: the same drops give the same tags
                held = set(session.scalars(select(VersionTag.tag).where(VersionTag.version_id == manifest.version_id)))
                for tag in sorted(set(tags) - held):
                    session.add(VersionTag(version_id=manifest.version_id, tag=tag))
            for drop in doc["parents"]["drops"]:
                self._edge(session, ("drop", drop), ("version", manifest.version_id))
            if doc["parents"]["previous"]:
                self._edge(session, ("version", doc["parents"]["previous"]), ("version", manifest.version_id))
            for result in quality:
                row = session.scalar(
                    select(QualityCheckResult).where(
                        QualityCheckResult.version_id == manifest.version_id, QualityCheckResult.name == result.name
                    )
                )
                if row is None:
                    row = QualityCheckResult(version_id=manifest.version_id, name=result.name)
                    session.add(row)
                row.passed, row.severity = result.passed, result.severity
                row.detail, row.recorded_at = json.dumps(result.detail, sort_keys=True), utcnow()

    def register_run(self, run_id: str, version_id: str, *, model: str | None = None) -> None:
        """Record that training run ``run_id`` used version ``version_id`` (idempotent); unknown versions fail."""
        if not run_id.strip():
            raise ValueError("a run id must not be empty")
        for attempt in range(3):
            try:
                with Session(self.engine) as session, session.begin():
                    if session.get(Version, version_id) is None:
                        raise CatalogError(f"version {version_id} is not in the catalog")
                    run = session.get(TrainingRun, run_id)
                    if run is None:
                        session.add(TrainingRun(run_id=run_id, model=model))
                    elif model and not run.model:
                        run.model = model
                    session.flush()
                    if session.get(TrainingRunVersion, (run_id, version_id)) is None:
                        session.add(TrainingRunVersion(run_id=run_id, version_id=version_id))
                    self._edge(session, ("version", version_id), ("training_run", run_id))
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    # -- reads ---------------------------------------------------------------------------------

    def resolve(self, dataset: str, version: str | None = None) -> VersionRef:
        """A dataset's version by number (``3``), id (or a unique id prefix of 8+ hex), or its latest."""
        with Session(self.engine) as session:
            ds = session.scalar(select(Dataset).where(Dataset.name == dataset))
            if ds is None:
                raise CatalogError(f"dataset {dataset!r} is not in the catalog")
            query = select(Version).where(Version.dataset_id == ds.id)
            if version is None or version == "latest":
                row = session.scalar(query.order_by(Version.number.desc()).limit(1))
            elif version.isdigit() and len(version) < 8:
                row = session.scalar(query.where(Version.number == int(version)))
            else:
                rows = session.scalars(query.where(Version.id.startswith(version.lower()))).all()
                row = rows[0] if len(rows) == 1 else None
            if row is None:
                raise CatalogError(f"dataset {dataset!r} has no version {version or '(none yet)'}")
            return VersionRef(dataset, row.number, row.id, row.manifest_key, row.store_url)

    def resolve_reference(self, reference: str) -> VersionRef:
        """The version ``reference`` names: a version id (64 hex), ``DATASET@VERSION`` or ``DATASET`` (its latest);
        :class:`CatalogError` when the catalog does not know it."""
        if _HEX64.fullmatch(reference):
            ref = self.find_version(reference)
            if ref is None:
                raise CatalogError(f"version {reference} is not in the catalog")
            return ref
        dataset, _, version = reference.partition("@")
        return self.resolve(dataset, version or None)

    def find_version(self, version_id: str) -> VersionRef | None:
        """The version with id ``version_id``, or None."""
        with Session(self.engine) as session:
            row = session.get(Version, version_id)
            if row is None:
                return None
            return VersionRef(row.dataset.name, row.number, row.id, row.manifest_key, row.store_url)

    def latest_version(self, dataset: str) -> VersionRef | None:
        """The dataset's newest version, or None."""
        try:
            return self.resolve(dataset)
        except CatalogError:
            return None

    def show(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """Everything about one version: purpose, owner, policy, retention, quality, lineage, models that used it."""
        ref = self.resolve(dataset, version)
        with Session(self.engine) as session:
            row = session.get(Version, ref.version_id)
            assert row is not None
            ds = row.dataset
            tags = tags_of(session, ds.id, row.id)
            quality = session.scalars(
                select(QualityCheckResult)
                .where(QualityCheckResult.version_id == row.id)
                .order_by(QualityCheckResult.name)
            ).all()
            summaries = session.scalars(select(ObjectSummary).where(ObjectSummary.version_id == row.id)).all()
            runs = session.execute(
                select(TrainingRun.run_id, TrainingRun.model, TrainingRunVersion.registered_at)
                .join(TrainingRunVersion)
                .where(TrainingRunVersion.version_id == row.id)
                .order_by(TrainingRun.run_id)
            ).all()
            upstream = session.scalars(
                select(LineageEdge).where(LineageEdge.dst_kind == "version", LineageEdge.dst_id == row.id)
            ).all()
            downstream = session.scalars(
                select(LineageEdge).where(LineageEdge.src_kind == "version", LineageEdge.src_id == row.id)
            ).all()
            facets = session.scalars(select(VersionFacet).where(VersionFacet.version_id == row.id)).all()
            return {
                "dataset": ds.name,
                "version": row.number,
                "version_id": row.id,
                "previous": row.previous_id,
                "latest_version": max(v.number for v in ds.versions),
                "purpose": ds.purpose,
                "owner": ds.owner.name,
                "project": ds.project or ds.name,
                "policy_tags": list(restrictive(tags)),  # restrict access: spec tags and drops' sensitivity
                "labels": sorted(t for t in tags if ":" in t),  # describe: deid:…, source:…, approval:…
                "retention": ds.retention_class,
                "phi_status": row.phi_status,
                "lifecycle": {
                    "state": row.lifecycle_state,
                    "changed_at": (row.state_changed_at.isoformat(timespec="seconds") + "Z")
                    if row.state_changed_at else None,
                    "reason": row.state_reason,
                },
                "deid": {
                    "profile": row.deid_profile,
                    "version": row.deid_version,
                    "options": json.loads(row.deid_options),
                },
                "manifest": row.manifest_key,
                "store": row.store_url,
                "spec_sha256": row.spec_sha256,
                "code_version": row.code_version,
                "created_at": row.created_at.isoformat(timespec="seconds") + "Z",
                "objects": row.objects,
                "bytes": row.bytes,
                "patients": row.patients,
                "labelled_patients": row.labelled_patients,
                "facets": {
                    f: sorted(x.value for x in facets if x.facet == f) for f in sorted({x.facet for x in facets})
                },
                "summary": [
                    {
                        "modality": s.modality,
                        "split": s.split,
                        "objects": s.objects,
                        "bytes": s.bytes,
                        "patients": s.patients,
                    }
                    for s in sorted(summaries, key=lambda s: (s.modality, s.split))
                ],
                "quality": [
                    {"name": q.name, "passed": q.passed, "severity": q.severity, "detail": json.loads(q.detail)}
                    for q in quality
                ],
                "lineage": {
                    "from": sorted(f"{e.src_kind}:{e.src_id}" for e in upstream),
                    "to": sorted(f"{e.dst_kind}:{e.dst_id}" for e in downstream),
                },
                "training_runs": [
                    {
                        "run_id": r.run_id,
                        "model": r.model,
                        "registered_at": r.registered_at.isoformat(timespec="seconds"),
                    }
                    for r in runs
                ],
            }
