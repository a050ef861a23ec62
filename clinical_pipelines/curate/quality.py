"""Quality checks of a built version, recorded in the catalog and shown as a Dagster asset check."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PSEUDONYM = re.compile(r"^PSN-[A-Z0-9]{8,64}$")


@dataclass(frozen=True)
class QualityResult:
    """One check: name, outcome, severity (``error`` blocks use, ``warn`` informs) and counts (no PHI)."""

    name: str
    passed: bool
    severity: str = "error"
    detail: dict[str, Any] = field(default_factory=dict)


def check_version(doc: dict[str, Any], missing: list[str], label_required: bool) -> list[QualityResult]:
    """Checks over a manifest document and the keys found missing when it was built.

    Promises: an ``error`` failure means the version must not be used (missing objects, a patient in
    two splits, a non-pseudonymous patient id); ``warn`` failures (an empty split, unlabelled
    patients) are reported only.
    """
    objects = doc["objects"]
    splits: dict[str, set[str]] = {}
    labelled: dict[str, bool] = {}
    for row in objects:
        splits.setdefault(row["patient_id"], set()).add(row["split"])
        labelled[row["patient_id"]] = row.get("label") is not None
    leaked = sorted(p for p, s in splits.items() if len(s) > 1)
    bad_ids = sum(1 for p in splits if not PSEUDONYM.match(p))
    populated = {s for ss in splits.values() for s in ss}
    empty = sorted(set(doc["split"]["ratios"]) - populated)
    with_label = sum(labelled.values())
    return [
        QualityResult("objects_present", not missing, "error", {"missing": len(missing), "objects": len(objects)}),
        QualityResult("patient_level_split", not leaked, "error", {"patients_in_two_splits": len(leaked)}),
        QualityResult("pseudonymous_ids_only", bad_ids == 0, "error", {"non_pseudonymous_ids": bad_ids}),
        QualityResult("splits_populated", not empty, "warn", {"empty_splits": ",".join(empty)}),
        QualityResult(
            "labels_present",
            with_label == len(labelled) or not label_required,
            "error" if label_required else "warn",
            {"patients": len(labelled), "labelled": with_label},
        ),
    ]
