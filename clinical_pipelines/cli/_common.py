"""What every command group shares: the zone options, settings from them, one-line failures, sizes,
and manifest resolution. Only ``click`` is imported here, so ``clinical-pipelines --help`` stays fast."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from clinical_pipelines.catalog.access import Access
    from clinical_pipelines.catalog.repository import Catalog
    from clinical_pipelines.curate.manifest import Manifest
    from clinical_pipelines.settings import Settings
    from clinical_pipelines.storage import ObjectStore

_HEX64 = re.compile(r"^[0-9a-f]{64}$")

data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None, help="Data folder (holds landing/ and the zones)."
)
store_url_option = click.option(
    "--store-url", help="Object store holding the zones, if not the data folder (e.g. s3://bucket/prefix)."
)
catalog_url_option = click.option(
    "--catalog-url", help="Catalog database URL (default: CLINICAL_PIPELINES_CATALOG_URL)."
)


def zone_options(func: Any) -> Any:
    """``--data-dir``, ``--store-url`` and ``--catalog-url`` on a command (in that order in its help)."""
    for option in (catalog_url_option, store_url_option, data_dir_option):
        func = option(func)
    return func


principal_option = click.option(
    "--as", "principal", metavar="PRINCIPAL",
    help="Who is acting (default: CLINICAL_PIPELINES_PRINCIPAL; locally, local-admin). Grants decide what it may do.",
)  # fmt: skip
purpose_option = click.option(
    "--purpose", help="Why, as a code (training, qa, irb-2024-117), for the audit log; never free text."
)


def governed_options(func: Any) -> Any:
    """The zone options plus ``--as`` and ``--purpose``: for commands that touch data and are audited."""
    return zone_options(principal_option(purpose_option(func)))


def governed(settings: Settings, principal: str | None) -> tuple[Catalog, Access, str]:
    """The catalog, its access control and the acting principal (no principal in production: exit 2)."""
    from clinical_pipelines.catalog.governed import access_for, acting_principal

    who = acting_principal(settings, principal)
    catalog = open_catalog(settings)
    return catalog, access_for(catalog, settings), who


def refused(message: str) -> NoReturn:
    """One line on stderr and exit status 3: the principal holds no grant for this (already audited)."""
    click.echo(f"refused: {message}", err=True)
    sys.exit(3)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: configuration and output-folder errors (no traceback)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def config_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the configuration or request is wrong" (variables, key folder, key files, a malformed
    grant): one line, exit 2."""
    from clinical_pipelines.catalog.access import AccessError
    from clinical_pipelines.limits import LimitsError
    from clinical_pipelines.settings import SettingsError
    from clinical_pipelines.storage.envelope import LegacyEnvelope
    from clinical_pipelines.storage.keys import KeyError_

    return (SettingsError, LimitsError, KeyError_, LegacyEnvelope, AccessError)


def settings_for(
    data_dir: Path | None = None, store_url: str | None = None, catalog_url: str | None = None
) -> Settings:
    """Settings from the environment, with the command's zone options winning."""
    from clinical_pipelines.settings import Settings

    return Settings.from_env(data_dir=data_dir, store_url=store_url, catalog_url=catalog_url)


def env_settings() -> Settings:
    """Settings from the environment alone; a malformed value is one line and exit 2."""
    try:
        return settings_for()
    except ValueError as exc:  # SettingsError and malformed numbers; messages name variables, not data
        fail(str(exc))


def open_catalog(settings: Settings) -> Catalog:
    """The catalog the settings name, connected and migrated."""
    from clinical_pipelines.catalog.repository import Catalog

    return Catalog.open(settings.catalog_url, store_url=settings.store_url)


def size(n: int) -> str:
    """Bytes in the largest decimal unit that keeps a digit before the point."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def resolve_manifest(reference: str, settings: Settings, store: ObjectStore) -> Manifest:
    """A manifest from a local file path, ``DATASET@VERSION``, ``DATASET`` (latest) or a version id."""
    from clinical_pipelines.catalog.repository import CatalogError
    from clinical_pipelines.curate.manifest import ManifestError, find_manifest, load_manifest, read_manifest_file

    try:
        if Path(reference).is_file():
            return read_manifest_file(reference)
        if _HEX64.match(reference):
            ref = open_catalog(settings).find_version(reference)
            return load_manifest(store, ref.dataset, ref.version_id) if ref else find_manifest(store, reference)
        dataset, _, version = reference.partition("@")
        ref = open_catalog(settings).resolve(dataset, version or None)
        return load_manifest(store, ref.dataset, ref.version_id)
    except (ManifestError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from None
