"""Warm worker processes kept across calls: an in-order map with bounded work in flight, and one registry that
keeps at most one pool per purpose (DICOM de-identification, notes, shard samples) until the process exits.

Workers come from a ``forkserver`` context: they never inherit the parent's threads (Dagster's, a progress
bar's) or the locks those hold, and each loads what it needs once, in its initializer, for every later call.
Each worker's BLAS runs one thread: the workers themselves are the parallelism, and a BLAS thread per core in
every worker would oversubscribe the cores.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
P = TypeVar("P", bound="WarmPool")


def start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    """A worker process's first step: one BLAS thread (see the module's docstring), then ``initializer``."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    if initializer is not None:
        initializer(*initargs)


def worker_executor(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A forkserver process pool whose workers start with :func:`start_worker`."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver"),
        initializer=start_worker, initargs=(initializer, initargs),
    )  # fmt: skip


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read lazily: a worker's task takes a chunk."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class WarmPool:
    """``workers`` forkserver processes, each set up once by ``initializer(*initargs)``."""

    def __init__(self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()):
        self.workers = workers
        self._executor = worker_executor(workers, initializer, initargs)

    def submit(self, task: Callable[[T], R], item: T) -> Future[R]:
        """``task(item)`` in a worker; ``task`` must be a module-level function (it is pickled by name)."""
        return self._executor.submit(task, item)

    def imap(self, task: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``task(item)`` for each item, run in the workers, in order; at most ``2 * workers`` in flight.

        ``items`` is consumed lazily, so the caller may read each input just before it is needed and memory
        stays bounded. ``task`` must be a module-level function (it is pickled by name).
        """
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(self.submit(task, item))
            while len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def start_workers(self) -> None:
        """Start every worker now, without waiting: each runs its initializer (loads its models) while the caller
        goes on. Work submitted later waits only for what is not loaded yet."""
        for _ in range(self.workers):  # a forkserver executor starts one worker per submit while none is idle
            self._executor.submit(_ready)

    @property
    def broken(self) -> bool:
        """A worker died (killed, out of memory): the pool takes no more work."""
        return bool(getattr(self._executor, "_broken", False))

    def shutdown(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(cancel_futures=True)


def _ready() -> None:
    """A task that does nothing: submitted to make a worker start (and run its initializer)."""


_POOLS: dict[str, tuple[Hashable, WarmPool]] = {}
_LOCK = threading.Lock()


def warm(purpose: str, ident: Hashable, start: Callable[[], P]) -> P:
    """The process's pool for ``purpose``: the one ``start()`` made for the same ``ident``, kept until exit.

    A pool whose workers died is replaced, and so is one made for another ``ident`` (another secret, other
    settings or size): at most one pool per purpose, the replaced one stopped. ``ident`` must not hold a
    secret itself (pass a hash of it): it stays in memory for the life of the process.
    """
    with _LOCK:
        held = _POOLS.get(purpose)
        if held is not None and held[0] == ident and not held[1].broken:
            return held[1]  # type: ignore[return-value]
        if held is not None:
            held[1].shutdown()
        pool = start()
        _POOLS[purpose] = (ident, pool)
        return pool


def is_warm(purpose: str, ident: Hashable) -> bool:
    """Whether this process holds a live pool for ``purpose`` made for ``ident`` (nothing is started)."""
    with _LOCK:
        held = _POOLS.get(purpose)
        return held is not None and held[0] == ident and not held[1].broken


@atexit.register
def shutdown_all() -> None:
    """Stop every warm pool of this process (at exit; tests call it before forking)."""
    with _LOCK:
        for _, pool in _POOLS.values():
            pool.shutdown()
        _POOLS.clear()
