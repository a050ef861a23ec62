"""Catalog database connections and migrations: SQLite by default, PostgreSQL when configured.

Migrations are Alembic scripts shipped inside the package (``catalog/migrations``) and run on
open. They keep their revision in their own table, ``catalog_alembic_version``, so the catalog can share
a database with anything else that uses Alembic (Dagster's PostgreSQL storage keeps ``alembic_version``);
a catalog migrated by an older release, whose revision sits in ``alembic_version``, is moved over on
open. Concurrent openers are serialised: SQLite transactions start with ``BEGIN IMMEDIATE`` (one
writer at a time, others wait), PostgreSQL migrations hold a transaction-level advisory lock.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK = 0x6361_7461  # "cata"
#: Where the catalog's Alembic keeps its revision (never Alembic's default ``alembic_version``).
VERSION_TABLE = "catalog_alembic_version"
_LEGACY_VERSION_TABLE = "alembic_version"


def _sqlite_immediate(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, open transactions, and open them as writers (no lock upgrades, no deadlock)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg2://...``); SQLite folders are created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_immediate(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")  # psycopg (3) is not installed
    return create_engine(parsed, pool_pre_ping=True)


@functools.cache
def _alembic_config_base() -> str:
    return str(MIGRATIONS)


def _config(connection: object):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _alembic_config_base())
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _catalog_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config(None)).walk_revisions()}


def _adopt_legacy_revision(conn: Connection) -> None:
    """Move a catalog revision an older release stored in ``alembic_version`` into :data:`VERSION_TABLE`.

    Only rows naming one of the catalog's own revisions move; anybody else's (Dagster's) stay untouched,
    and the legacy table is dropped only when nothing else is left in it.
    """
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables or _LEGACY_VERSION_TABLE not in tables:
        return
    rows = [r[0] for r in conn.execute(text(f"SELECT version_num FROM {_LEGACY_VERSION_TABLE}"))]
    ours = [r for r in rows if r in _catalog_revisions()]
    if not ours:
        return
    from alembic import command

    command.stamp(_config(conn), ours)  # env.py writes VERSION_TABLE
    for revision in ours:
        conn.execute(text(f"DELETE FROM {_LEGACY_VERSION_TABLE} WHERE version_num = :r"), {"r": revision})
    if len(ours) == len(rows):
        conn.execute(text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest); safe to call from concurrent processes."""
    from alembic import command

    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        _adopt_legacy_revision(conn)
        command.upgrade(_config(conn), revision)


def safe_url(url: str | URL) -> str:
    """``url`` with any password masked, for metadata and messages."""
    return make_url(url).render_as_string(hide_password=True)
