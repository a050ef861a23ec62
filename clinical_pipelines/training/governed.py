"""The governed way into training data: a :class:`StreamingDataset` of a catalogued version, opened only by
a principal holding ``read`` on it, and recorded once in the audit log (``read.open-reader``).

:class:`StreamingDataset` itself takes an object store: whoever holds the store's credentials reads the
shards without the platform. This entry point is what the platform offers its users; the store's own
permissions are what keeps everyone else out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinical_pipelines.training.cache import ShardCache
from clinical_pipelines.training.reader import StreamingDataset
from clinical_pipelines.zones import training_index_key

if TYPE_CHECKING:
    from clinical_pipelines.settings import Settings

def open_training_dataset(reference: str, split: str, *, principal: str | None = None, purpose: str | None = None,
                          settings: Settings | None = None, cache: ShardCache | None = None,
                          **options: Any) -> StreamingDataset:  # fmt: skip
    """Stream ``split`` of the version ``reference`` names (``DATASET``, ``DATASET@N``, ``DATASET@ID`` or a
    version id), as ``principal`` (default: the settings' principal).

    Promises: without a ``read`` grant covering the version's project and policy tags it raises
    :class:`~clinical_pipelines.catalog.access.AccessDenied` (one line naming the missing grant) before any
    shard is read, and the refusal is audited; otherwise the opening is audited once. An archived or expired
    version raises :class:`~clinical_pipelines.curate.lifecycle.LifecycleError` saying so. ``options`` go to
    :class:`StreamingDataset` (seed, rank, world_size, ...); ``cache`` defaults to the settings' cache folder.
    """
    from clinical_pipelines.catalog.governed import access_for, acting_principal
    from clinical_pipelines.catalog.repository import Catalog
    from clinical_pipelines.curate.lifecycle import OUT_OF_TRAINING, LifecycleError, version_state
    from clinical_pipelines.settings import Settings

    settings = settings or Settings.from_env()
    who = acting_principal(settings, principal)
    catalog = Catalog.open(settings.catalog_url, store_url=settings.store_url)
    try:
        ref = catalog.resolve_reference(reference)
        access = access_for(catalog, settings)
        access.authorize(who, "read", access.version_scope(ref.version_id), operation="open-reader",
                         purpose=purpose, detail=f"split={split}")  # fmt: skip
        state = version_state(catalog, ref.version_id)
        if state in OUT_OF_TRAINING:
            raise LifecycleError(f"{ref.dataset}@{ref.number} is {state}: its training shards were removed "
                                 "(its manifest and objects are in archive/)")  # fmt: skip
    finally:
        catalog.close()
    if cache is None:
        cache = ShardCache.bounded(settings.cache_dir, max_gb=settings.cache_max_gb, ttl_hours=settings.cache_ttl_hours)
    store = settings.open_store()
    return StreamingDataset(store, training_index_key(ref.dataset, ref.version_id), split, cache, **options)
