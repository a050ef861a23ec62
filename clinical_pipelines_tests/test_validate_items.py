"""The standalone CLI's per-file checks refuse exactly what the pipeline's validation stage quarantines,
with the same reasons and details (the pipeline through Great Expectations, the CLI in plain Python)."""

from __future__ import annotations

import pytest

from clinical_pipelines.storage import ObjectStore
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.validate.dicom import INFLATE_FLOOR_BYTES, inflate_limit
from clinical_pipelines.validate.engine import DropValidator
from clinical_pipelines.validate.items import check_dicom, check_note
from clinical_pipelines_tests.hostile import deflate_bomb
from clinical_pipelines_tests.test_validate import corpus_files, dicom_variant, ingest


@pytest.fixture
def local(local_store: ObjectStore) -> ObjectStore:
    return local_store


def test_inflate_limit_is_a_ratio_with_a_floor_and_a_ceiling() -> None:
    assert inflate_limit(1000) == INFLATE_FLOOR_BYTES
    # the ceiling is CLINICAL_PIPELINES_MAX_INFLATED_MB (default 256): pydicom inflates a dataset in memory
    assert inflate_limit(10 * 1024 * 1024) == 256 * 1024 * 1024
    assert inflate_limit(1 << 40) == 256 * 1024 * 1024
    gib = 1024 * 1024 * 1024
    assert inflate_limit(10 * 1024 * 1024, cap=gib) == 1000 * 1024 * 1024
    assert inflate_limit(1 << 40, cap=gib) == gib
    assert inflate_limit(1000, cap=1024 * 1024) == 1024 * 1024  # a cap below the floor wins


def test_cli_checks_match_the_pipeline(local: ObjectStore, keyring: KeyRing) -> None:
    dicoms = corpus_files("dicom")
    first = next(iter(dicoms.values()))
    files = dict(dicoms)
    files |= {
        "dicom/future.dcm": dicom_variant(first, StudyDate="29991231", SOPInstanceUID="1.2.3.999.1"),
        "dicom/no-modality.dcm": dicom_variant(first, Modality=None, SOPInstanceUID="1.2.3.999.2"),
        "dicom/odd-modality.dcm": dicom_variant(first, Modality="ZZ", SOPInstanceUID="1.2.3.999.3"),
        "dicom/cut.dcm": first[: len(first) // 2],
        "dicom/bomb.dcm": deflate_bomb(70 * 1024 * 1024),
    }
    notes = corpus_files("notes")
    notes |= {
        "notes/empty.txt": b" \n\t\n",
        "notes/nul.txt": b"Seen in clinic today.\x00 Stable.",
        "notes/short.txt": b"Stable.",
        "notes/huge.txt": b"Patient stable today. " * 10_000,
        "notes/controls.txt": ("Seen today \x07\x07\x07 and stable; follow up in two weeks as planned." * 2).encode(),
    }
    modalities = {path: "dicom" for path in files if path.startswith("dicom/")}
    ingest(local, keyring, "mixed", files | notes, modalities | {p: "notes" for p in notes})
    validator = DropValidator(local, keyring, max_item_failure_fraction=0.9)
    for modality, items, check in (("dicom", files, check_dicom), ("notes", notes, check_note)):
        report = validator.validate("src", "mixed", modality)
        pipeline = {r.path_id: (r.reason, r.detail) for r in report.quarantined}
        assert len(pipeline) >= 4
        cli = {}
        for path, data in items.items():
            verdict = check(data)
            if not isinstance(verdict, dict):
                cli[validator.quarantine.item_id(path)] = (verdict.reason, verdict.detail)
        assert cli == pipeline, modality
