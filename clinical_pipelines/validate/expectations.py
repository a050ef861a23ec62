"""Great Expectations suites declared in code, and a runner that returns only PHI-free outcomes.

A suite is a list of :class:`Rule`. Each rule is one GX 1.x expectation plus how
a failure counts:

- ``per_item`` rules judge each row (an item: a file, or a table row): failing
  rows are quarantined and the drop goes on, unless too many fail;
- other rules judge the frame as a whole; a ``critical`` one failing stops the
  drop at this stage.

GX results carry the failing values themselves (``partial_unexpected_list``,
``unexpected_index_list``...). :func:`run_suite` keeps only expectation names,
columns, counts, percentages and the ids of failing rows; nothing else leaves it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ITEM_COLUMN = "_item"


@dataclass(frozen=True, eq=False)
class Rule:
    """One expectation of a suite: a GX expectation class name and its arguments."""

    expectation: str  # GX class name, e.g. "ExpectColumnValuesToNotBeNull"
    kwargs: dict[str, Any]
    per_item: bool = True
    critical: bool = True

    def _key(self) -> tuple[object, ...]:
        return (self.expectation, repr(sorted(self.kwargs.items())), self.per_item, self.critical)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._key() == other._key()

    def __hash__(self) -> int:  # kwargs is a dict: hash its repr so suites can be cached by their rules
        return hash(self._key())

    @property
    def name(self) -> str:
        """A stable, readable name: snake-case expectation type plus its column(s)."""
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in self.expectation).lstrip("_")
        target = self.kwargs.get("column") or "+".join(self.kwargs.get("column_list", ())) or ""
        if "column_A" in self.kwargs:
            target = f"{self.kwargs['column_A']}>{self.kwargs['column_B']}"
        return f"{snake}[{target}]" if target else snake


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule found: counts and failing item ids only (never a value)."""

    name: str
    success: bool
    critical: bool
    per_item: bool
    element_count: int = 0
    unexpected_count: int = 0
    unexpected_percent: float = 0.0
    failing_items: tuple[str, ...] = field(default=())
    error: str | None = None  # exception type name when GX could not evaluate the rule


def _silence_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def import_gx() -> None:
    """Import Great Expectations (seconds, once per process) without building a context."""
    _silence_gx()
    import great_expectations.expectations  # noqa: F401


@functools.lru_cache(maxsize=32)
def _prepared(suite_name: str, rules: tuple[Rule, ...]) -> tuple[Any, Any]:
    """An ephemeral GX context's batch definition and suite for ``rules``, built once per process.

    Building them costs about as much as validating a few hundred rows, so drops validated
    in one process share them (rules carry today's date, so a new day builds new ones).
    """
    _silence_gx()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("all")
    )
    suite = gx.ExpectationSuite(name=suite_name)
    for index, rule in enumerate(rules):
        suite.add_expectation(getattr(gxe, rule.expectation)(**rule.kwargs, meta={"rule": index}))
    return batch_definition, context.suites.add(suite)


def run_suite(suite_name: str, frame: Any, rules: Sequence[Rule]) -> list[RuleOutcome]:
    """Validate ``frame`` (a pandas DataFrame with an ``_item`` id column) against ``rules`` through GX.

    Uses an ephemeral GX context (cached per process and rule set): nothing is read from or
    written to a GX project folder or a cloud service. Returns one sanitized outcome per rule.
    """
    batch_definition, suite = _prepared(suite_name, tuple(rules))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    # Fast path: most drops pass, and a pass/fail-only run costs half of a full one.
    if batch.validate(suite, result_format="BOOLEAN_ONLY").success:
        return sorted(
            (RuleOutcome(r.name, True, r.critical, r.per_item, element_count=len(frame)) for r in rules),
            key=lambda o: o.name,
        )
    result = batch.validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ITEM_COLUMN]}
    )
    outcomes: list[RuleOutcome] = []
    for expectation_result in result.results:
        rule = rules[int(expectation_result.expectation_config.meta["rule"])]
        details = expectation_result.result or {}
        raised = bool(expectation_result.exception_info and expectation_result.exception_info.get("raised_exception"))
        failing = tuple(
            sorted({str(row[ITEM_COLUMN]) for row in details.get("unexpected_index_list") or [] if ITEM_COLUMN in row})
        )
        outcomes.append(
            RuleOutcome(
                name=rule.name,
                success=bool(expectation_result.success),
                critical=rule.critical,
                per_item=rule.per_item,
                element_count=int(details.get("element_count") or 0),
                unexpected_count=int(details.get("unexpected_count") or 0),
                unexpected_percent=round(float(details.get("unexpected_percent") or 0.0), 3),
                failing_items=failing,
                error="expectation could not be evaluated" if raised else None,
            )
        )
    return sorted(outcomes, key=lambda o: o.name)
