"""Quiet one misleading Dagster warning that skipped modality steps cause.

A drop holds only some modalities; the ingest step materializes only those (``skippable`` raw specs),
so Dagster skips the validated and de-identified steps of the others. Before it skips a
de-identified step, Dagster's plan logs that the skipped validated step's blocking check "emitted no
result" and that the downstream step "will proceed without gating on it", though it is skipped too.
Every validated step that runs emits its check, so this warning only ever follows a skipped step.
"""

from __future__ import annotations

import logging

_PLAN_LOGGER = "dagster._core.execution.plan.active"
_MESSAGE = "emitted no result in step"


class _SkippedCheckWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and _MESSAGE in str(record.msg))


_FILTER = _SkippedCheckWarningFilter()


def quiet_skipped_check_warnings() -> None:
    """Install the filter on Dagster's plan logger (once; idempotent)."""
    logger = logging.getLogger(_PLAN_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
