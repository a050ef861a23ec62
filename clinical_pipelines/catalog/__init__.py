"""The dataset catalog: SQLAlchemy models, Alembic migrations (shipped in the package), search. No Dagster here."""
