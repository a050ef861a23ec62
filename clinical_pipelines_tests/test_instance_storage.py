"""The embedded instance's event log: Dagster's consolidated SQLite storage with one SQLAlchemy engine per process.
Same file and schema as Dagster's own class (each reads what the other wrote), one engine for many events, and
a new engine after a fork, whose writes the parent reads."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import dagster as dg
import sqlalchemy
from dagster._core.storage.event_log import ConsolidatedSqliteEventLogStorage

from clinical_pipelines import instance_storage
from clinical_pipelines.instance_storage import ProcessEngineSqliteEventLogStorage
from clinical_pipelines.local_instance import prepare_home

PARTS = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=PARTS, check_specs=[dg.AssetCheckSpec("positive", asset="scores", blocking=True)])
def scores() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3}, check_results=[dg.AssetCheckResult(passed=True)])


def _yaml(home: Path, module: str, cls: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nevent_log_storage:\n  module: {module}\n  class: {cls}\n"
        f"  config:\n    base_dir: {home}\n"
    )


def _materialize(home: Path, partition: str) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([scores], instance=instance, partition_key=partition).success


def _seen(home: Path) -> tuple[set[str], int]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        partitions = instance.get_materialized_partitions(scores.key)
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(scores.key, "positive"), limit=10
        )
        return set(partitions), len(checks)


def test_the_embedded_instance_uses_it(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / ".dagster")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is ProcessEngineSqliteEventLogStorage
    yaml = (Path(__file__).resolve().parent.parent / "dagster.yaml").read_text()
    assert "class: ProcessEngineSqliteEventLogStorage" in yaml and "module: clinical_pipelines.instance_storage" in yaml


def test_dagsters_own_class_and_this_one_read_each_others_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _yaml(home, "dagster._core.storage.event_log", "ConsolidatedSqliteEventLogStorage")
    _materialize(home, "a")
    _yaml(home, "clinical_pipelines.instance_storage", "ProcessEngineSqliteEventLogStorage")
    assert _seen(home) == ({"a"}, 1)
    _materialize(home, "b")
    assert _seen(home) == ({"a", "b"}, 2)
    _yaml(home, "dagster._core.storage.event_log", "ConsolidatedSqliteEventLogStorage")
    assert _seen(home) == ({"a", "b"}, 2)


def _count_engines(monkeypatch: object, module: object) -> list[int]:
    made: list[int] = []
    original = sqlalchemy.create_engine

    def counting(*args: object, **kwargs: object) -> object:
        made.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "create_engine", counting)  # type: ignore[attr-defined]
    return made


def test_one_engine_serves_every_event_of_the_process(tmp_path: Path, monkeypatch: object) -> None:
    import dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log as dagster_module

    ours = _count_engines(monkeypatch, instance_storage)
    theirs = _count_engines(monkeypatch, dagster_module)
    storage = ProcessEngineSqliteEventLogStorage(str(tmp_path / "ours"))
    baseline = ConsolidatedSqliteEventLogStorage(str(tmp_path / "theirs"))
    theirs.clear()  # the creation of the database itself
    for name, events in (("ours", storage), ("theirs", baseline)):
        with dg.DagsterInstance.ephemeral() as instance:
            instance._event_storage = events  # type: ignore[attr-defined]
            events.register_instance(instance)
            for partition in ("a", "b", "a"):
                assert dg.materialize([scores], instance=instance, partition_key=partition).success, name
            assert set(instance.get_materialized_partitions(scores.key)) == {"a", "b"}
    assert len(ours) == 1
    assert len(theirs) > 30  # Dagster's class: a new engine for every connection (several per event)


def test_connections_are_reused_across_events(tmp_path: Path) -> None:
    storage = ProcessEngineSqliteEventLogStorage(str(tmp_path))
    opened: list[int] = []
    sqlalchemy.event.listen(storage._process_engine(), "connect", lambda *_: opened.append(1))
    with dg.DagsterInstance.ephemeral() as instance:
        instance._event_storage = storage  # type: ignore[attr-defined]
        storage.register_instance(instance)
        for partition in ("a", "b", "a", "b"):
            assert dg.materialize([scores], instance=instance, partition_key=partition).success
        events = len(instance.get_records_for_run(instance.get_runs()[0].run_id).records)
    assert events > 5 and 1 <= len(opened) <= 2  # four runs' events over one or two pooled SQLite connections


def _materialize_many(home: str, partitions: list[str]) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        for partition in partitions:
            assert dg.materialize([scores], instance=instance, partition_key=partition).success


def test_two_processes_write_one_event_log_at_once(tmp_path: Path) -> None:
    home = prepare_home(tmp_path / ".dagster")
    # Created once first: Dagster's own schedule storage stamps its Alembic revision without a lock, so two
    # processes creating one new instance at the same instant can leave two heads (seen here, 3 of 5 tries).
    dg.DagsterInstance.from_config(str(home)).dispose()
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_materialize_many, args=(str(home), ["a", "b"] * 4)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(300)
    assert [w.exitcode for w in writers] == [0, 0]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 16 and all(r.is_success for r in runs)
        records = instance.fetch_materializations(scores.key, limit=100).records
        assert len(records) == 16  # none lost to a locked database
        assert all(instance.get_records_for_run(r.run_id).records for r in runs)


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    storage = _STORAGE[0]
    inherited = storage._engine
    with storage.index_connection() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS child_probe (pid INTEGER)"))
        conn.execute(sqlalchemy.text("INSERT INTO child_probe VALUES (1)"))
    queue.put(inherited is not None and storage._engine is not inherited and storage._engine_pid == os.getpid())


_STORAGE: list[ProcessEngineSqliteEventLogStorage] = []


def test_a_forked_process_gets_its_own_engine_and_the_parent_reads_its_writes(tmp_path: Path) -> None:
    storage = ProcessEngineSqliteEventLogStorage(str(tmp_path))
    with storage.index_connection() as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
    parent_engine = storage._engine
    _STORAGE[:] = [storage]
    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()  # type: ignore[type-arg]
    child = multiprocessing.get_context("fork").Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) is True  # the child made its own engine rather than use the inherited one
    assert storage._engine is parent_engine  # the parent's engine was not replaced by the child's use
    with storage.index_connection() as conn:
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM child_probe")).scalar() == 1
    storage.dispose()
