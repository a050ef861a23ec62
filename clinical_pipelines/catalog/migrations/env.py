"""Alembic environment of the catalog: runs on the connection the caller passes in ``config.attributes``."""

from alembic import context

from clinical_pipelines.catalog.db import VERSION_TABLE
from clinical_pipelines.catalog.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the package always passes one
    raise RuntimeError("run catalog migrations through clinical_pipelines.catalog.db.migrate()")
# Its own version table: the database may be shared with Dagster's storage, whose Alembic owns ``alembic_version``.
context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, version_table=VERSION_TABLE
)
with context.begin_transaction():
    context.run_migrations()
