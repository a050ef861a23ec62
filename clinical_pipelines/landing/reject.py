"""Move a landing folder that cannot be a partition (unsafe name, stale) into quarantine."""

from __future__ import annotations

from clinical_pipelines.landing.discovery import Rejection
from clinical_pipelines.landing.manifest import DROP_MANIFEST
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord
from clinical_pipelines.storage import ObjectNotFound, ObjectStore, UnsafeKey
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import LANDING, landing_drop_prefix, quarantine_invalid_prefix

STAGE = "landing"


def find_rejection(store: ObjectStore, prefix_hash: str, reason: str) -> Rejection | None:
    """The landing drop folder whose prefix hashes to ``prefix_hash``, if it still needs rejecting."""
    for source in store.list_children(LANDING):
        for drop_id in store.list_children(f"{LANDING}/{source}"):
            rejection = Rejection(landing_drop_prefix(source, drop_id), reason)
            if rejection.prefix_hash != prefix_hash:
                continue
            if reason == "stale_incomplete_drop" and store.head(rejection.landing_prefix + DROP_MANIFEST):
                return None  # completed since the sensor judged it stale: the sensor will pick it up
            return rejection
    return None


def quarantine_landing_folder(store: ObjectStore, keyring: KeyRing, rejection: Rejection) -> list[QuarantineRecord]:
    """Copy every object of the folder into ``quarantine/_invalid/<hash>/`` (encrypted), then remove it from landing.

    Removal happens only after every object is safely in quarantine, object by
    object, so a crash part-way leaves each byte in at least one place.
    """
    quarantine = Quarantine(store, keyring)
    folder = quarantine_invalid_prefix(rejection.landing_prefix)
    records = []
    for info in list(store.list(rejection.landing_prefix)):
        relative = info.key[len(rejection.landing_prefix) :]
        try:
            content = store.open_read(info.key)
        except (ObjectNotFound, UnsafeKey):
            content = None
        try:
            record = quarantine.put(
                folder,
                reason=rejection.reason,
                detail=_detail(rejection.reason),
                stage=STAGE,
                source="_invalid",
                drop_id=rejection.prefix_hash,
                path=relative,
                content=content,
            )
        finally:
            if content is not None:
                content.close()
        records.append(record)
        store.delete(info.key)
    return records


def _detail(reason: str) -> str:
    if reason == "unsafe_name":
        return "source or drop folder name is not [A-Za-z0-9._-]{1,128}; the whole folder was quarantined"
    return "the drop folder never received drop.json within the stale timeout"
