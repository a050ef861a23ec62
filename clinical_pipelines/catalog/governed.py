"""Who is acting, from the settings: the principal for governed entry points, and the catalog's access control.

Shared by the CLI and the library entry points (the training reader), so both resolve the acting principal
the same way: an explicit one wins, then ``CLINICAL_PIPELINES_PRINCIPAL``, then (local environment only) the
local administrator, who is created on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinical_pipelines.catalog.access import LOCAL_ADMIN, Access, check_principal
from clinical_pipelines.settings import ENV, ENV_PRINCIPAL, SettingsError

if TYPE_CHECKING:
    from clinical_pipelines.catalog.repository import Catalog
    from clinical_pipelines.settings import Settings


def acting_principal(settings: Settings, principal: str | None = None) -> str:
    """``principal`` if given, else the settings' one; :class:`SettingsError` when there is none (production
    has no default: someone must say who is acting)."""
    name = principal or settings.principal
    if not name:
        raise SettingsError(
            f"no principal: pass --as NAME or set {ENV_PRINCIPAL} ({ENV}={settings.env} has no default principal)"
        )
    return check_principal(name)


def access_for(catalog: Catalog, settings: Settings) -> Access:
    """Access control over ``catalog``; in the local environment an empty catalog first gets its local
    administrator (every action but ``keys``), so a new checkout needs no setup."""
    access = Access(catalog.engine)
    if settings.env == "local":
        access.bootstrap(LOCAL_ADMIN)
    return access
