"""How many files of each modality drops waiting in landing declare: a plan for warming workers, not a decision.

Read from each drop's ``drop.json`` (one small read per drop): the ``modality`` an entry names, else the one
its file name suggests. Ingest still sniffs every file's bytes; a wrong guess here costs time, never data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from clinical_pipelines.landing.manifest import (
    DROP_MANIFEST,
    MAX_MANIFEST_BYTES,
    DropManifestError,
    parse_drop_manifest,
)
from clinical_pipelines.landing.sniff import modality_by_name
from clinical_pipelines.storage import ObjectStore, StoreError, read_all
from clinical_pipelines.zones import landing_drop_prefix


def declared_modalities(store: ObjectStore, drops: Iterable[tuple[str, str]]) -> Counter[str]:
    """Files per modality that the ``(source, drop_id)`` drops' ``drop.json`` declare.

    A drop whose ``drop.json`` is missing, too large or invalid counts nothing (ingest reports it); so does
    an entry whose modality cannot be told from its name. Nothing is logged: paths may carry PHI.
    """
    counts: Counter[str] = Counter()
    for source, drop_id in drops:
        key = landing_drop_prefix(source, drop_id) + DROP_MANIFEST
        try:
            info = store.head(key)
            if info is None or info.size > MAX_MANIFEST_BYTES:
                continue
            manifest = parse_drop_manifest(read_all(store, key), source=source, drop_id=drop_id)
        except (StoreError, DropManifestError, ValueError):
            continue
        for entry in manifest.entries:
            modality = entry.modality or modality_by_name(entry.path)
            if modality is not None:
                counts[modality] += 1
    return counts
