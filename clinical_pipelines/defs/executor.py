"""The executor of every job: Dagster's multiprocess executor, each step forked from a warm server.

Dagster's default start method (``spawn``) starts every step in a fresh interpreter that imports the
definitions, Dagster and the engines again: seconds per step, most of a small drop's run. With
``forkserver`` and ``preload_modules`` the run's first step process starts a server that imports
them once; every other step of the run is forked from it. Steps stay separate processes (one
failing step cannot take the others down), and run config may still override ``start_method``
and ``max_concurrent``.
"""

from __future__ import annotations

import dagster as dg

#: Imported once per run by the forkserver: the definitions (Dagster, the engines) and what the
#: steps import lazily (Great Expectations, Presidio, spaCy).
PRELOADED_MODULES = ["clinical_pipelines.definitions", "clinical_pipelines.defs.step_imports"]

step_executor = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": PRELOADED_MODULES}}},
    name="multiprocess_forkserver",
)
