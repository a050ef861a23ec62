"""Move a landing folder that cannot be a partition (unsafe name, stale) into quarantine."""

from __future__ import annotations

from clinical_pipelines.landing.discovery import Rejection, folder_id
from clinical_pipelines.landing.manifest import DROP_MANIFEST
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord
from clinical_pipelines.storage import ObjectInfo, ObjectStore, StoreError
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.storage.names import NameKey
from clinical_pipelines.zones import LANDING, landing_drop_prefix, quarantine_invalid_prefix

STAGE = "landing"


def find_rejection(store: ObjectStore, names: NameKey, prefix_hash: str, reason: str) -> Rejection | None:
    """The landing drop folder (or stray file) whose keyed id is ``prefix_hash``, if it still needs rejecting."""
    if reason == "stray_file":
        for prefix in (LANDING, *(f"{LANDING}/{s}" for s in store.list_children(LANDING))):
            for info in store.list_files_here(prefix):
                if folder_id(names, info.key) == prefix_hash:
                    return Rejection(info.key, reason, prefix_hash)
        return None
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
    if rejection.reason == "stray_file":  # one file, exactly that key (its name may prefix others')
        base = rejection.landing_prefix.rsplit("/", 1)[0] + "/"
        infos = [ObjectInfo(rejection.landing_prefix, 0, 0.0)]
    else:
        base = rejection.landing_prefix
        infos = sorted(store.list(base), key=lambda i: i.key == base + DROP_MANIFEST)  # drop.json last
    with quarantine.batch():
        for info in infos:
            relative = info.key[len(base) :]
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
    if prune is not None and rejection.reason != "stray_file":
        prune(rejection.landing_prefix)
    return records


def _detail(reason: str) -> str:
    if reason == "stray_file":
        return "a file directly in landing/ or landing/<source>/, outside any drop folder, past the stale timeout"
    if reason == "unsafe_name":
        return "source or drop folder name is not [A-Za-z0-9._-]{1,128}; the whole folder was quarantined"
    return "the drop folder never received drop.json within the stale timeout"
