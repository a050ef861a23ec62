"""Every asset key, group, kind, owner, tag and check, and every job and sensor, pinned as a snapshot: a change to
what the Dagster catalog shows is a change to this file, seen in review.

To accept an intended change, run this file's tests with ``UPDATE_DEFINITIONS_SNAPSHOT=1`` and commit the
snapshot with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.settings import Settings

SNAPSHOT = Path(__file__).parent / "data" / "definitions_snapshot.json"


def describe(settings: Settings) -> dict[str, Any]:
    """What the Dagster catalog shows for the definitions built from ``settings``, as plain JSON."""
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    assets = {}
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        checks = sorted(k.name for k in graph.get_check_keys_for_assets({spec.key}))
        assets[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "kinds": sorted(spec.kinds),
            "owners": list(spec.owners),
            "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith("dagster/kind/")},
            "checks": checks,
            "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
        }
    repository = defs.get_repository_def()
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in repository.get_all_jobs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "schedules": sorted(s.name for s in repository.schedule_defs),
    }


def test_the_dagster_catalog_matches_its_snapshot(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")
    found = describe(settings)
    if os.environ.get("UPDATE_DEFINITIONS_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    assert found == json.loads(SNAPSHOT.read_text())


def test_no_asset_is_described_as_mere_python(tmp_path: Path) -> None:
    found = describe(Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys"))
    assert found["assets"] and all(a["kinds"] and "python" not in a["kinds"] for a in found["assets"].values())
    assert all(a["owners"] for a in found["assets"].values())
