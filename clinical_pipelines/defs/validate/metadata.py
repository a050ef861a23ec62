"""Metadata for validated materializations and their check results: names, counts, percentages; never values."""

import dagster as dg

from clinical_pipelines.validate.engine import ValidationReport
from clinical_pipelines.version import code_version
from clinical_pipelines.zones import validated_record_key


def validated_metadata(report: ValidationReport) -> dict[str, dg.MetadataValue]:
    """Lineage and outcome of one drop's validation for one modality."""
    return {
        "drop_id": dg.MetadataValue.text(report.drop_id),
        "source": dg.MetadataValue.text(report.source),
        "items_total": dg.MetadataValue.int(report.items_total),
        "items_passed": dg.MetadataValue.int(len(report.passed_items)),
        "items_quarantined": dg.MetadataValue.int(len(report.quarantined)),
        "quarantined_by_reason": dg.MetadataValue.json(report.quarantined_by_reason()),
        "table_rows": dg.MetadataValue.int(sum(t.rows for t in report.tables)),
        "table_rows_rejected": dg.MetadataValue.int(sum(t.rows_rejected for t in report.tables)),
        "promotable": dg.MetadataValue.bool(report.passed),
        "critical_failures": dg.MetadataValue.text(", ".join(report.critical_failures) or "none"),
        "items_per_s": dg.MetadataValue.float(
            round(report.items_total / report.seconds, 1) if report.seconds > 0 else 0.0
        ),
        "validated_record": dg.MetadataValue.path(validated_record_key(report.modality, report.source, report.drop_id)),
        "code_version": dg.MetadataValue.text(code_version()),
    }


def check_metadata(report: ValidationReport) -> dict[str, dg.MetadataValue]:
    """One entry per expectation (its name, with column) saying ok or how many items failed it."""
    metadata: dict[str, dg.MetadataValue] = {
        "items_total": dg.MetadataValue.int(report.items_total),
        "items_failed": dg.MetadataValue.int(report.failed_items),
        "critical_failures": dg.MetadataValue.text(", ".join(report.critical_failures) or "none"),
    }
    for outcome in report.outcomes:
        if outcome.success:
            text = f"ok ({outcome.element_count} checked)"
        elif outcome.error:
            text = "failed: could not be evaluated"
        else:
            text = (
                f"failed: {outcome.unexpected_count} of {outcome.element_count} "
                f"({outcome.unexpected_percent:.1f}%){' CRITICAL' if outcome.critical and not outcome.per_item else ''}"
            )
        metadata[outcome.name] = dg.MetadataValue.text(text)
    return metadata


def check_description(report: ValidationReport) -> str:
    """One line for the UI: what blocked the drop, or that it passed."""
    if report.passed:
        return f"{len(report.passed_items)} of {report.items_total} item(s) passed; drop may be promoted"
    return f"drop stopped at validation: {', '.join(report.critical_failures)}"
