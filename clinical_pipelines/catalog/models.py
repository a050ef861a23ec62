"""Catalog tables (SQLAlchemy 2 ORM). Only pseudonyms, hashes, counts and governance data: never PHI."""

from __future__ import annotations

import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime.datetime:
    """Timestamps are stored in UTC."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names (so migrations can name them)."""

    metadata = MetaData(naming_convention=NAMING)


class Owner(Base):
    """A person or team accountable for datasets."""

    __tablename__ = "owners"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class RetentionClass(Base):
    """A retention class datasets are kept under (policy text lives with the governance team)."""

    __tablename__ = "retention_classes"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class PolicyTag(Base):
    """A policy tag (e.g. ``research``, ``no-commercial-use``)."""

    __tablename__ = "policy_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class DatasetPolicyTag(Base):
    """Which tags a dataset carries."""

    __tablename__ = "dataset_policy_tags"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("policy_tags.id"), primary_key=True)


class Dataset(Base):
    """A curated dataset (one spec)."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id"))
    purpose: Mapped[str] = mapped_column(Text)
    retention_class: Mapped[str] = mapped_column(ForeignKey("retention_classes.name"))
    spec_sha256: Mapped[str] = mapped_column(String(64))
    spec_json: Mapped[str] = mapped_column(Text)
    project: Mapped[str | None] = mapped_column(String(64), nullable=True)  # grants are scoped by it
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    owner: Mapped[Owner] = relationship()
    versions: Mapped[list[Version]] = relationship(back_populates="dataset", order_by="Version.number")


class Version(Base):
    """A curated version: its manifest's identity, provenance and summary figures."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_versions_dataset_number"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the manifest's sha256
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    manifest_key: Mapped[str] = mapped_column(String(300))
    store_url: Mapped[str] = mapped_column(Text)
    spec_sha256: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(100))
    deid_profile: Mapped[str | None] = mapped_column(Text, nullable=True)
    deid_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    deid_options: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    phi_status: Mapped[str] = mapped_column(String(32), default="de-identified")
    objects: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    patients: Mapped[int] = mapped_column(Integer)
    labelled_patients: Mapped[int] = mapped_column(Integer)
    age_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    age_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    date_min: Mapped[str | None] = mapped_column(String(8), nullable=True)  # YYYYMMDD (shifted study dates)
    date_max: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    # hot | warm | frozen | archived | expired (clinical_pipelines.curate.lifecycle); a recorded version is warm
    lifecycle_state: Mapped[str] = mapped_column(String(16), default="warm", server_default="warm")
    state_changed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    state_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class VersionFacet(Base):
    """Searchable values of a version: ``modality``, ``imaging_modality``, ``body_part``, ``age_band``, ``label``."""

    __tablename__ = "version_facets"
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    facet: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)


class VersionTag(Base):
    """A policy tag of one version: its drops' sensitivity and labels (``source:…``, ``approval:…``) and its
    ``deid:<profile>@<version>``; the spec's own tags are on the dataset (:class:`DatasetPolicyTag`)."""

    __tablename__ = "version_tags"
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)


class ObjectSummary(Base):
    """Objects, bytes and patients of a version per modality and split."""

    __tablename__ = "object_summaries"
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    modality: Mapped[str] = mapped_column(String(32), primary_key=True)
    split: Mapped[str] = mapped_column(String(32), primary_key=True)
    objects: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    patients: Mapped[int] = mapped_column(Integer)


class QualityCheckResult(Base):
    """A quality check's outcome for a version (counts only)."""

    __tablename__ = "quality_results"
    __table_args__ = (UniqueConstraint("version_id", "name", name="uq_quality_results_version_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    severity: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    recorded_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class LineageEdge(Base):
    """A directed lineage link: drop → version, version → version, version → training run."""

    __tablename__ = "lineage_edges"
    __table_args__ = (UniqueConstraint("src_kind", "src_id", "dst_kind", "dst_id", name="uq_lineage_edges_edge"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    src_kind: Mapped[str] = mapped_column(String(32))
    src_id: Mapped[str] = mapped_column(String(300), index=True)
    dst_kind: Mapped[str] = mapped_column(String(32))
    dst_id: Mapped[str] = mapped_column(String(300), index=True)


class TrainingRun(Base):
    """A training run registered as having used one or more versions."""

    __tablename__ = "training_runs"
    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    registered_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class TrainingRunVersion(Base):
    """Which versions a training run used."""

    __tablename__ = "training_run_versions"
    run_id: Mapped[str] = mapped_column(ForeignKey("training_runs.run_id", ondelete="CASCADE"), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"), primary_key=True)
    registered_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class AuditRecord(Base):
    """One entry of the append-only, hash-chained audit log (:mod:`clinical_pipelines.catalog.audit`).

    Who did what to which object or version, why and with what outcome: principals, actions, version ids,
    pseudonyms and hashes only, never PHI. ``record_hash`` is the SHA-256 of the record's canonical
    encoding, which includes ``prev_hash``, the hash of the record before it.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target_seq", "target", "seq"),)  # a target's last records, no scan
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32))  # ISO 8601, UTC, microseconds: hashed as written
    principal: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str | None] = mapped_column(String(200), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(500), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64))  # unique by construction (it covers seq); no index to keep


class Principal(Base):
    """Someone or something that acts on data (a person, a service, a job); grants name it."""

    __tablename__ = "principals"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class Project(Base):
    """A project datasets belong to (the spec's ``project``, by default the dataset's name); grants are scoped by it."""

    __tablename__ = "projects"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    closed_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class AccessGrant(Base):
    """One grant: ``principal`` may ``action`` on data of ``project`` carrying ``tag`` (``*``: any project / tag)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("principal", "project", "tag", "action", name="uq_grants_scope"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(ForeignKey("principals.name", ondelete="CASCADE"))
    project: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)


class LegalHold(Base):
    """A legal hold on a dataset (every version, ``version_id`` None) or one version, for one case; active until
    released. Retention and deletion never touch what an active hold covers."""

    __tablename__ = "legal_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    version_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    case_id: Mapped[str] = mapped_column(String(64))
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    released_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    released_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
