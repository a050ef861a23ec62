"""Alembic environment of the catalog: runs on the connection the caller passes in ``config.attributes``."""

from alembic import context

from clinical_pipelines.catalog.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the package always passes one
    raise RuntimeError("run catalog migrations through clinical_pipelines.catalog.db.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
