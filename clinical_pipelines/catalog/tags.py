"""The policy tags of a dataset or version, read in one place (catalog show, search, access scopes)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.models import DatasetPolicyTag, PolicyTag, VersionTag


def tags_of(session: Session, dataset_id: int, version_id: str | None = None) -> set[str]:
    """The policy tags of a dataset's spec, plus (with ``version_id``) that version's own (:class:`VersionTag`)."""
    tags = set(session.scalars(
        select(PolicyTag.name).join(DatasetPolicyTag).where(DatasetPolicyTag.dataset_id == dataset_id)
    ))  # fmt: skip
    if version_id is not None:
        tags |= set(session.scalars(select(VersionTag.tag).where(VersionTag.version_id == version_id)))
    return tags
