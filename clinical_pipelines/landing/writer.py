"""Put a drop into a landing zone the way a source system should: files first, drop.json last."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from clinical_pipelines.landing.manifest import DROP_MANIFEST, FileEntry, build_drop_manifest
from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.zones import landing_drop_prefix


def write_drop(
    store: ObjectStore,
    source: str,
    drop_id: str,
    files: Mapping[str, bytes],
    *,
    modalities: Mapping[str, str] | None = None,
) -> list[FileEntry]:
    """Upload ``files`` (relative path → bytes) to ``landing/<source>/<drop_id>/``, then its drop.json.

    drop.json goes last because its presence is what marks the drop complete.
    Returns the entries written to drop.json.
    """
    prefix = landing_drop_prefix(source, drop_id)
    entries = []
    for path, data in sorted(files.items()):
        store.put_bytes(prefix + path, data)
        entries.append(FileEntry(path, len(data), hashlib.sha256(data).hexdigest(), (modalities or {}).get(path)))
    store.put_bytes(prefix + DROP_MANIFEST, build_drop_manifest(source, drop_id, entries))
    return entries
