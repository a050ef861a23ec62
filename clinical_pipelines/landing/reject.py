"""Move a landing folder that cannot be a partition (unsafe name, stale) into quarantine."""

from __future__ import annotations

from clinical_pipelines.landing.discovery import Rejection, folder_id
from clinical_pipelines.landing.manifest import DROP_MANIFEST
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord
from clinical_pipelines.storage import ObjectStore, StoreError
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.storage.names import NameKey
from clinical_pipelines.zones import LANDING, landing_drop_prefix, quarantine_invalid_prefix

STAGE = "landing"


def find_rejection(store: ObjectStore, names: NameKey, prefix_hash: str, reason: str) -> Rejection | None:
    """The landing drop folder whose keyed id is ``prefix_hash``, if it still needs rejecting."""
    for source in store.list_children(LANDING):
        for drop_id in store.list_children(f"{LANDING}/{source}"):
            prefix = landing_drop_prefix(source, drop_id)
            if folder_id(names, prefix) != prefix_hash:
                continue
            if reason == "stale_incomplete_drop":
                try:
                    completed = store.head(prefix + DROP_MANIFEST) is not None
                except StoreError:
                    completed = True
                if completed:
                    return None  # completed since the sensor judged it stale: the sensor will pick it up
            return Rejection(prefix, reason, prefix_hash)
    return None


def quarantine_landing_folder(
    store: ObjectStore, keyring: KeyRing, rejection: Rejection, names: NameKey | None = None
) -> list[QuarantineRecord]:
    """Copy every object of the folder into ``quarantine/_invalid/<id>/`` (encrypted), then remove it from landing.

    Removal happens only after an object is safely in quarantine, object by object, and
    ``drop.json`` goes last, so a crash part-way leaves each byte in at least one place and the
    folder still complete (the next rejection finishes the move). Any name is handled: the
    store reads, lists and removes source-chosen keys whatever characters they hold. The
    folder's records are aggregated (one per reason), however many files it holds.
    """
    quarantine = Quarantine(store, keyring, names)
    folder = quarantine_invalid_prefix(rejection.prefix_hash)
    records = []
    infos = sorted(
        store.list(rejection.landing_prefix), key=lambda i: i.key == rejection.landing_prefix + DROP_MANIFEST
    )
    with quarantine.batch():
        for info in infos:
            relative = info.key[len(rejection.landing_prefix) :]
            try:
                content = store.open_read(info.key)
                detail = _detail(rejection.reason)
            except StoreError:  # a symlink, FIFO or unreadable entry: recorded (no bytes to keep), then removed
                content, detail = None, _detail(rejection.reason) + "; the entry was not a readable regular file"
            try:
                record = quarantine.put(
                    folder,
                    reason=rejection.reason,
                    detail=detail,
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
    for info in infos:  # only once every record is written
        store.delete(info.key)
    prune = getattr(store, "remove_empty_folders", None)  # a folder store keeps empty folders otherwise
    if prune is not None:
        prune(rejection.landing_prefix)
    return records


def _detail(reason: str) -> str:
    if reason == "unsafe_name":
        return "source or drop folder name is not [A-Za-z0-9._-]{1,128}; the whole folder was quarantined"
    return "the drop folder never received drop.json within the stale timeout"
