"""Legal holds: a dataset (every version) or one version is kept whatever retention says, per case, until the hold
is released. Placing and releasing need a ``hold`` grant on what is held and are audited; the lifecycle job and
every deletion ask :meth:`LegalHolds.covering` first (a hold always wins)."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.access import Access, AccessError, Scope
from clinical_pipelines.catalog.models import LegalHold, utcnow
from clinical_pipelines.catalog.repository import Catalog

CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class Hold:
    """One hold: what it covers (a dataset, or one version of it), the case, who placed and released it."""

    dataset: str
    version_id: str | None
    case_id: str
    placed_by: str
    placed_at: datetime.datetime
    released_by: str | None = None
    released_at: datetime.datetime | None = None

    @property
    def active(self) -> bool:
        """Not released."""
        return self.released_at is None

    @property
    def target(self) -> str:
        """``version:<id>`` or ``dataset:<name>`` (the audit target)."""
        return f"version:{self.version_id}" if self.version_id else f"dataset:{self.dataset}"


def _hold(row: LegalHold) -> Hold:
    return Hold(row.dataset, row.version_id, row.case_id, row.placed_by, row.placed_at, row.released_by,
                row.released_at)  # fmt: skip


class LegalHolds:
    """Legal holds in the catalog database, decided by ``access``."""

    def __init__(self, catalog: Catalog, access: Access) -> None:
        self.catalog, self.access = catalog, access

    def _target(self, reference: str) -> tuple[str, str | None]:
        """``DATASET`` (every version) or ``DATASET@VERSION``; CatalogError when the catalog does not know it."""
        dataset, at, version = reference.partition("@")
        if not at:
            self.catalog.resolve(dataset)  # the dataset exists and has a version
            return dataset, None
        return dataset, self.catalog.resolve(dataset, version).version_id

    def _scope(self, dataset: str, version_id: str | None) -> Scope:
        if version_id is not None:
            return self.access.version_scope(version_id)
        return self.access.dataset_scope(dataset)

    def place(self, principal: str, reference: str, case_id: str, *, purpose: str | None = None) -> Hold:
        """Hold ``reference`` for ``case_id`` (an existing active hold of the same case is returned as it is).
        Needs ``hold`` on it: :class:`AccessDenied` (audited) otherwise."""
        if not CASE_ID.fullmatch(case_id):
            raise AccessError(f"a case id must match {CASE_ID.pattern}")
        dataset, version_id = self._target(reference)
        scope = self._scope(dataset, version_id)
        with self.access.perform(principal, "hold", scope, operation="place", purpose=purpose) as activity:
            activity.detail = f"case={case_id}"
            with Session(self.catalog.engine) as session, session.begin():
                row = session.scalar(select(LegalHold).where(
                    LegalHold.dataset == dataset, LegalHold.version_id.is_(None) if version_id is None
                    else LegalHold.version_id == version_id, LegalHold.case_id == case_id,
                    LegalHold.released_at.is_(None)))  # fmt: skip
                if row is None:
                    row = LegalHold(dataset=dataset, version_id=version_id, case_id=case_id, placed_by=principal,
                                    placed_at=utcnow())  # fmt: skip
                    session.add(row)
                    session.flush()
                return _hold(row)

    def release(self, principal: str, reference: str, case_id: str, *, purpose: str | None = None) -> int:
        """Release the active holds of ``case_id`` on exactly ``reference``; returns how many. Needs ``hold``."""
        dataset, version_id = self._target(reference)
        scope = self._scope(dataset, version_id)
        with self.access.perform(principal, "hold", scope, operation="release", purpose=purpose) as activity:
            with Session(self.catalog.engine) as session, session.begin():
                rows = session.scalars(select(LegalHold).where(
                    LegalHold.dataset == dataset, LegalHold.version_id.is_(None) if version_id is None
                    else LegalHold.version_id == version_id, LegalHold.case_id == case_id,
                    LegalHold.released_at.is_(None))).all()  # fmt: skip
                for row in rows:
                    row.released_by, row.released_at = principal, utcnow()
            activity.detail = f"case={case_id} released={len(rows)}"
            return len(rows)

    def holds(self, *, dataset: str | None = None, include_released: bool = False) -> list[Hold]:
        """Holds (active only unless ``include_released``), oldest first."""
        query = select(LegalHold).order_by(LegalHold.id)
        if dataset is not None:
            query = query.where(LegalHold.dataset == dataset)
        if not include_released:
            query = query.where(LegalHold.released_at.is_(None))
        with Session(self.catalog.engine) as session:
            return [_hold(r) for r in session.scalars(query)]

    def covering(self, dataset: str, version_id: str) -> list[Hold]:
        """The active holds that keep this version: on its dataset, or on it."""
        return [h for h in self.holds(dataset=dataset) if h.version_id in (None, version_id)]
