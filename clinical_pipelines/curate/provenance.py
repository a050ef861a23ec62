"""A version's lineage as a FHIR R4 ``Provenance`` resource: target the version, entities its parents."""

from __future__ import annotations

import datetime
from typing import Any

from clinical_pipelines.curate.manifest import Manifest

SYSTEM_VERSION = "urn:clinical-pipelines:dataset-version"
SYSTEM_DROP = "urn:clinical-pipelines:drop"
SYSTEM_CODE = "urn:clinical-pipelines:code-version"


def provenance_resource(manifest: Manifest, recorded: datetime.datetime | None = None) -> dict[str, Any]:
    """The FHIR R4 Provenance of ``manifest``: target = the version, entities = its drops (``source``) and
    the previous version (``revision``), agent = the pipeline code version (an assembler device).

    ``recorded`` defaults to now (UTC); the resource id is the version id.
    """
    when = (recorded or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC)
    doc = manifest.doc
    entities: list[dict[str, Any]] = [
        {"role": "source", "what": {"identifier": {"system": SYSTEM_DROP, "value": drop}, "display": f"drop {drop}"}}
        for drop in doc["parents"]["drops"]
    ]
    if doc["parents"].get("previous"):
        previous = doc["parents"]["previous"]
        entities.append(
            {
                "role": "revision",
                "what": {
                    "identifier": {"system": SYSTEM_VERSION, "value": previous},
                    "display": f"{manifest.dataset} previous version",
                },
            }
        )
    return {
        "resourceType": "Provenance",
        "id": manifest.version_id,
        "target": [
            {
                "identifier": {"system": SYSTEM_VERSION, "value": manifest.version_id},
                "display": f"{manifest.dataset} v{manifest.number}",
            }
        ],
        "recorded": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                    "display": "create",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                            "display": "Assembler",
                        }
                    ]
                },
                "who": {
                    "type": "Device",
                    "identifier": {"system": SYSTEM_CODE, "value": doc["code_version"]},
                    "display": f"clinical-pipelines {doc['code_version']}",
                },
            }
        ],
        "entity": entities,
    }
