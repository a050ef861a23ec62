"""Find complete drops in the landing zone without listing the files inside them.

Cost per scan: one delimiter listing of ``landing/`` (sources), one per source
(its drop folders), and one HEAD of ``drop.json`` per drop not yet known. Files
inside drops are never listed, so 10,000 objects in landing cost what their
drop folders cost.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field

from clinical_pipelines.landing.manifest import DROP_MANIFEST, is_safe_name
from clinical_pipelines.storage import ObjectInfo, ObjectStore, StoreError
from clinical_pipelines.storage.names import NameKey
from clinical_pipelines.zones import LANDING, landing_drop_prefix

PARTITION_SEPARATOR = "/"


def partition_key(source: str, drop_id: str) -> str:
    """The Dagster partition key of a drop: ``<source>/<drop_id>`` (both safe names)."""
    return f"{source}{PARTITION_SEPARATOR}{drop_id}"


def parse_partition_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`partition_key`; raises ValueError for a key that is not a drop's."""
    source, sep, drop_id = key.partition(PARTITION_SEPARATOR)
    if not sep or not is_safe_name(source) or not is_safe_name(drop_id):
        raise ValueError("not a drop partition key: expected <source>/<drop_id> with safe names")
    return source, drop_id


@dataclass(frozen=True)
class Rejection:
    """A landing folder that cannot become a partition, to be moved to quarantine."""

    landing_prefix: str  # may hold an unsafe (possibly PHI-bearing) name: never log it
    reason: str  # "unsafe_name" | "stale_incomplete_drop" | "stray_file" (then landing_prefix is the file's key)
    prefix_hash: str  # the folder's safe, stable handle: a keyed id of its prefix (never a plain hash)


def folder_id(names: NameKey, landing_prefix: str) -> str:
    """The keyed id of a landing folder (what run config, cursors and ``quarantine/_invalid/`` name it by)."""
    return names.name_id(landing_prefix)


@dataclass
class Discovery:
    """What one scan of the landing zone found."""

    complete: list[tuple[str, str]] = field(default_factory=list)  # new complete drops (source, drop_id)
    rejections: list[Rejection] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)  # incomplete drop -> when first seen
    folders_listed: int = 0
    heads: int = 0


def _has_manifest(store: ObjectStore, prefix: str) -> bool:
    """Whether something named drop.json sits in the folder (a symlink or FIFO counts: ingest refuses it)."""
    try:
        return store.head(prefix + DROP_MANIFEST) is not None
    except StoreError:  # not a regular file, or unreadable: the drop is there, and its manifest is bad
        return True


def _files_here(store: ObjectStore, prefix: str) -> list[ObjectInfo]:
    listing = getattr(store, "list_files_here", None)  # stores without it (test doubles) have no strays
    return list(listing(prefix)) if listing is not None else []


def discover_drops(
    store: ObjectStore,
    *,
    names: NameKey,
    known: Container[str],
    first_seen: Mapping[str, float],
    now: float,
    stale_after_s: float | None = None,
) -> Discovery:
    """Scan landing for drops not in ``known`` (partition keys already registered).

    A drop is complete when its ``drop.json`` exists. Incomplete drops are
    remembered in ``first_seen`` (carry it in the sensor cursor; unsafe folders
    appear there only by keyed id); one still incomplete after ``stale_after_s``
    seconds is rejected as stale. Folders with unsafe names are rejected once
    complete. No folder name, however hostile, stops the scan of the others.
    """
    found = Discovery()

    def stray(info: ObjectInfo) -> None:  # a file outside any drop folder: kept, once it is stale
        key = folder_id(names, info.key)
        seen_at = first_seen.get(key, now)
        if stale_after_s is not None and now - seen_at >= stale_after_s:
            found.rejections.append(Rejection(info.key, "stray_file", key))
        else:
            found.first_seen[key] = seen_at

    for info in _files_here(store, LANDING):
        stray(info)
    for source in store.list_children(LANDING):
        found.folders_listed += 1
        for info in _files_here(store, f"{LANDING}/{source}"):
            stray(info)
        for drop_id in store.list_children(f"{LANDING}/{source}"):
            found.folders_listed += 1
            safe = is_safe_name(source) and is_safe_name(drop_id)
            prefix = landing_drop_prefix(source, drop_id)
            key = partition_key(source, drop_id) if safe else folder_id(names, prefix)
            if safe and key in known:
                continue
            found.heads += 1
            complete = _has_manifest(store, prefix)
            if complete and safe:
                found.complete.append((source, drop_id))
            elif complete:
                found.rejections.append(Rejection(prefix, "unsafe_name", folder_id(names, prefix)))
            else:
                seen_at = first_seen.get(key, now)
                if stale_after_s is not None and now - seen_at >= stale_after_s:
                    found.rejections.append(Rejection(prefix, "stale_incomplete_drop", folder_id(names, prefix)))
                else:
                    found.first_seen[key] = seen_at
    return found
