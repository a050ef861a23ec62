"""Lifecycle states of curated versions and the legal moves between them.

- ``hot``: sent back for (re)processing; ``warm``: in experimentation, where every recorded version starts (the
  catalog records a version only once its build is complete);
- ``frozen``: a release candidate, read-only, with a verified copy of its manifest and objects in ``archive/``;
- ``archived``: out of the training zone (its shards removed), manifest and objects kept in ``archive/``;
- ``expired``: eligible for deletion by the retention job (never while a legal hold covers it).

Moves: hot -> warm; warm -> hot, frozen, archived, expired; frozen -> archived (nothing else leaves frozen);
archived -> expired. Moving to hot, warm or frozen needs ``promote``; to archived or expired, ``delete``. Each
move is audited once. On S3 the archive zone is written in the store's archive storage class (cold).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.access import Access
from clinical_pipelines.catalog.holds import LegalHolds
from clinical_pipelines.catalog.models import Version, utcnow
from clinical_pipelines.catalog.repository import Catalog
from clinical_pipelines.curate.manifest import Manifest, load_manifest
from clinical_pipelines.curate.verify import VerifyReport, verify_rows
from clinical_pipelines.storage.base import ObjectAlreadyExists, ObjectStore, read_all
from clinical_pipelines.zones import ARCHIVE, training_version_prefix

STATES = ("hot", "warm", "frozen", "archived", "expired")
MOVES = {"hot": {"warm"}, "warm": {"hot", "frozen", "archived", "expired"}, "frozen": {"archived"},
         "archived": {"expired"}, "expired": set()}  # fmt: skip
NEEDS = {"hot": "promote", "warm": "promote", "frozen": "promote", "archived": "delete", "expired": "delete"}
REASON = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
#: States whose versions have no training shards (the training asset never rebuilds them).
OUT_OF_TRAINING = ("archived", "expired")


def version_state(catalog: Catalog, version_id: str) -> str | None:
    """A version's lifecycle state, or None when the catalog does not know it."""
    with Session(catalog.engine) as session:
        row = session.get(Version, version_id)
        return row.lifecycle_state if row is not None else None


class LifecycleError(ValueError):
    """A move the state machine does not allow, a hold in the way, or an archive copy that does not verify."""


def archive_key(key: str) -> str:
    """Where the archive copy of a curated object or manifest lives."""
    return f"{ARCHIVE}/{key}"


def archive_version(store: ObjectStore, manifest: Manifest) -> VerifyReport:
    """Copy ``manifest`` and every object it names into ``archive/`` (objects already there are kept: they are
    content-addressed) and re-hash the copies; :class:`LifecycleError` naming the first bad copy (bad copies are
    removed, the manifest is not copied, the curated originals are untouched)."""
    for row in manifest.objects:
        target = archive_key(str(row["key"]))
        if store.head(target) is not None:  # archived with another version, or by an earlier move: re-hashed below
            continue
        with store.open_read(str(row["key"])) as source, contextlib.suppress(ObjectAlreadyExists):
            store.put_stream(target, source, write_once=True)
    report = verify_rows([{**row, "key": archive_key(str(row["key"]))} for row in manifest.objects], store.open_read)
    if not report.ok:
        for problem in report.problems:  # a bad copy is ours to drop: the next attempt copies it again
            store.delete(problem.key)
        first = report.problems[0]
        raise LifecycleError(f"the archive copy of {manifest.dataset}@{manifest.number} does not verify: "
                             f"{first.reason} {first.key}")  # fmt: skip
    with contextlib.suppress(ObjectAlreadyExists):  # the manifest last, after every object it names
        store.put_bytes(archive_key(manifest.key), read_all(store, manifest.key), write_once=True)
    return report


def remove_training_shards(store: ObjectStore, dataset: str, version_id: str) -> int:
    """Delete a version's training shards, its index last (a reader never finds an index without its shards)."""
    keys = [o.key for o in store.list(training_version_prefix(dataset, version_id))]
    shards = [k for k in keys if not k.endswith("/index.json")]
    for key in shards + [k for k in keys if k.endswith("/index.json")]:
        store.delete(key)
    return len(keys)


@dataclass(frozen=True)
class Move:
    """A version's state change."""

    dataset: str
    number: int
    version_id: str
    old: str
    new: str
    archived_objects: int = 0
    removed_training_objects: int = 0


class Lifecycle:
    """State changes of curated versions over one catalog and store, decided by ``access``."""

    def __init__(self, catalog: Catalog, access: Access, store: ObjectStore) -> None:
        self.catalog, self.access, self.store = catalog, access, store

    def set_state(self, principal: str, reference: str, new: str, *, reason: str) -> Move:
        """Move ``reference`` (``DATASET@VERSION``, ``DATASET`` for its latest, or a version id) to ``new``:
        frozen makes and verifies the archive copy; archived makes sure of it and removes the training shards.
        Refused (audited) without the grant :data:`NEEDS` names; :class:`LifecycleError` for a move
        :data:`MOVES` does not allow or an expiry a legal hold forbids."""
        if new not in STATES:
            raise LifecycleError(f"unknown state {new!r}: use {', '.join(STATES)}")
        if not REASON.fullmatch(reason):
            raise LifecycleError(f"a reason is a code matching {REASON.pattern} (e.g. study-closed), not free text")
        ref = self.catalog.resolve_reference(reference)
        dataset = ref.dataset
        old = version_state(self.catalog, ref.version_id)
        assert old is not None  # resolved above
        if new not in MOVES[old]:
            allowed = ", ".join(sorted(MOVES[old])) or "nothing"
            raise LifecycleError(f"{dataset}@{ref.number} is {old}: it can move to {allowed}, not {new}")
        held = LegalHolds(self.catalog, self.access).covering(dataset, ref.version_id)
        if new == "expired" and held:
            cases = ", ".join(sorted({h.case_id for h in held}))
            raise LifecycleError(f"{dataset}@{ref.number} is under legal hold ({cases}): it cannot expire")
        scope = self.access.version_scope(ref.version_id)
        with self.access.perform(principal, NEEDS[new], scope, operation=f"lifecycle-{new}") as activity:
            archived = removed = 0
            if new in ("frozen", "archived"):
                archived = archive_version(self.store, load_manifest(self.store, dataset, ref.version_id)).objects
            if new == "archived":
                removed = remove_training_shards(self.store, dataset, ref.version_id)
            with Session(self.catalog.engine) as session, session.begin():  # only from the state we checked
                changed = session.execute(
                    update(Version).where(Version.id == ref.version_id, Version.lifecycle_state == old)
                    .values(lifecycle_state=new, state_changed_at=utcnow(), state_reason=reason)
                ).rowcount  # fmt: skip
            if not changed:
                raise LifecycleError(f"{dataset}@{ref.number} changed state meanwhile: look again and retry")
            activity.detail = f"from={old} to={new} reason={reason} archived={archived} removed={removed}"
        return Move(dataset, ref.number, ref.version_id, old, new, archived, removed)
