"""Searching the catalog: versions by modality, body part, age band, study dates, labels, PHI status, tag, owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from clinical_pipelines.catalog.models import (
    Dataset,
    DatasetPolicyTag,
    Owner,
    PolicyTag,
    Version,
    VersionFacet,
    VersionTag,
)
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.catalog.tags import tags_of
from clinical_pipelines.landing.sources import restrictive


@dataclass(frozen=True)
class SearchFilters:
    """Every filter is optional; given filters must all hold.

    ``modality`` matches an object modality (dicom, notes, labs, outcomes) or a DICOM one (CT, MR);
    ``age_min``/``age_max`` match versions whose observed ages overlap the band; ``date_from``/``date_to``
    (YYYYMMDD) versions whose (shifted) study dates overlap the range; ``labelled`` True/False
    versions with/without labelled patients; ``all_versions`` lists every version, not just each
    dataset's latest.
    """

    modality: str | None = None
    body_part: str | None = None
    age_min: int | None = None
    age_max: int | None = None
    date_from: str | None = None
    date_to: str | None = None
    labelled: bool | None = None
    phi_status: str | None = None
    policy_tag: str | None = None
    owner: str | None = None
    text: str | None = None
    all_versions: bool = False


def _facet(facet: str | tuple[str, ...], value: str) -> Any:
    names = (facet,) if isinstance(facet, str) else facet
    return exists().where(
        VersionFacet.version_id == Version.id,
        VersionFacet.facet.in_(names),
        func.lower(VersionFacet.value) == value.lower(),
    )


def build_query(filters: SearchFilters) -> Select[Any]:
    """The SQL query for ``filters`` (portable between SQLite and PostgreSQL)."""
    query = select(Version, Dataset, Owner).join(Dataset, Version.dataset_id == Dataset.id).join(Owner)
    if not filters.all_versions:
        other = aliased(Version)
        newest = select(func.max(other.number)).where(other.dataset_id == Version.dataset_id).scalar_subquery()
        query = query.where(Version.number == newest)
    if filters.modality:
        query = query.where(_facet(("modality", "imaging_modality"), filters.modality))
    if filters.body_part:
        query = query.where(_facet("body_part", filters.body_part))
    if filters.age_min is not None:
        query = query.where(Version.age_max >= filters.age_min)
    if filters.age_max is not None:
        query = query.where(Version.age_min <= filters.age_max)
    if filters.date_from:
        query = query.where(Version.date_max >= filters.date_from)
    if filters.date_to:
        query = query.where(Version.date_min <= filters.date_to)
    if filters.labelled is True:
        query = query.where(Version.labelled_patients > 0)
    elif filters.labelled is False:
        query = query.where(Version.labelled_patients == 0)
    if filters.phi_status:
        query = query.where(func.lower(Version.phi_status) == filters.phi_status.lower())
    if filters.policy_tag:  # the spec's tags (on the dataset) or the version's own (from its drops, its de-id)
        wanted = filters.policy_tag.lower()
        query = query.where(
            or_(
                exists().where(
                    DatasetPolicyTag.dataset_id == Dataset.id,
                    DatasetPolicyTag.tag_id == PolicyTag.id,
                    func.lower(PolicyTag.name) == wanted,
                ),
                exists().where(VersionTag.version_id == Version.id, func.lower(VersionTag.tag) == wanted),
            )
        )
    if filters.owner:
        query = query.where(func.lower(Owner.name) == filters.owner.lower())
    if filters.text:
        like = f"%{filters.text.lower()}%"
        query = query.where(or_(func.lower(Dataset.name).like(like), func.lower(Dataset.purpose).like(like)))
    return query.order_by(Dataset.name, Version.number)


def search(catalog: Catalog, filters: SearchFilters) -> list[dict[str, Any]]:
    """One dict per matching version: dataset, version, id, owner, tags, counts, modalities, body parts, ranges."""
    out = []
    with Session(catalog.engine) as session:
        for version, dataset, owner in session.execute(build_query(filters)).all():
            facets = session.execute(
                select(VersionFacet.facet, VersionFacet.value).where(VersionFacet.version_id == version.id)
            ).all()
            tags = tags_of(session, dataset.id, version.id)

            def values(name: str, facets: list[Any] = facets) -> list[str]:
                return sorted(v for f, v in facets if f == name)

            out.append(
                {
                    "dataset": dataset.name,
                    "version": version.number,
                    "version_id": version.id,
                    "owner": owner.name,
                    "project": dataset.project or dataset.name,
                    "purpose": dataset.purpose,
                    "policy_tags": list(restrictive(tags)),
                    "labels": sorted(t for t in tags if ":" in t),
                    "retention": dataset.retention_class,
                    "phi_status": version.phi_status,
                    "modalities": values("modality"),
                    "imaging_modalities": values("imaging_modality"),
                    "body_parts": values("body_part"),
                    "age_band": (values("age_band") or [None])[0],
                    "ages": [version.age_min, version.age_max],
                    "study_dates": [version.date_min, version.date_max],
                    "labelled_patients": version.labelled_patients,
                    "patients": version.patients,
                    "objects": version.objects,
                    "bytes": version.bytes,
                }
            )
    return out
