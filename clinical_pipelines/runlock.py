"""One ``clinical-pipelines run`` per data folder at a time, and telling a dead run from a live one.

The lock is an exclusive ``flock`` on ``DATA_DIR/.run.lock``: the kernel releases it when its
holder exits, however it exits (``kill -9`` included), so a crash never leaves a stale lock to
clean up. The file itself stays (deleting a lock file races with the next locker); it holds the
holder's identity, only to name it in the message a second run prints.

A process identity is ``host:pid:start``, where ``start`` is the process's start time in clock
ticks since boot (``/proc/<pid>/stat``), so a pid reused by another process after a crash is not
mistaken for the dead one. No Dagster import: the CLI and the Dagster layer both use this.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_NAME = ".run.lock"


class DataFolderBusy(Exception):
    """Another process holds the data folder's run lock (and the caller chose not to wait)."""


def _start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot, or None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_identity(pid: int | None = None) -> str:
    """``host:pid:start`` of this (or another local) process."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def is_alive(identity: str) -> bool | None:
    """Whether the process named by ``identity`` still runs: None when it is on another host (unknowable here)."""
    parts = identity.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not an identity this module wrote: nothing runs under it
    host, pid_text, start = parts
    if host != socket.gethostname():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process with that pid: alive, but is it ours?
        pass
    now = _start_ticks(pid)
    return not (start and now and now != start)  # the pid was reused by a later process


def _holder(fd: int) -> str:
    """Who holds the lock, in words, from what the holder wrote into the file (may be empty yet)."""
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(doc["since"])))
        return f"pid {doc['pid']} on {doc['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is starting"


@contextlib.contextmanager
def run_lock(data_dir: Path, *, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``data_dir``'s run lock for the block.

    When another process holds it: with ``wait``, call ``on_wait`` with a sentence naming the
    holder and block until it is released; without, raise :class:`DataFolderBusy` with that sentence.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"another clinical-pipelines run ({_holder(fd)}) is processing {data_dir} (lock {path})"
            if not wait:
                raise DataFolderBusy(message) from None
            if on_wait is not None:
                on_wait(message)
            fcntl.flock(fd, fcntl.LOCK_EX)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
