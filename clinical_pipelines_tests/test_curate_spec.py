"""Dataset specs: parsing, normalisation, identity, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinical_pipelines.curate.spec import SpecError, load_spec, load_specs, parse_spec, shipped_specs_dir
from clinical_pipelines_tests.test_curate_support import SPEC_TEXT


def test_spec_parses_every_field() -> None:
    spec = parse_spec(SPEC_TEXT, "test.yaml")
    assert spec.name == "chest_ct" and spec.owner == "imaging-research"
    assert spec.modalities == ("dicom", "outcomes") and spec.retention == "research-7y"
    assert spec.cohort.imaging_modality == ("CT",) and spec.cohort.body_part == ("CHEST",)
    assert (spec.cohort.age_band.min, spec.cohort.age_band.max) == (18, 89)  # type: ignore[union-attr]
    assert (spec.cohort.date_start, spec.cohort.date_end) == ("20200101", "20241231")
    assert spec.cohort.label_available and spec.labels is not None
    assert spec.labels.label_for("deceased") == "deceased" and spec.labels.label_for("transferred") == "other"
    assert spec.labels.label_for("") is None
    assert spec.ratios == {"test": "0.2", "train": "0.6", "val": "0.2"} and spec.split_seed == 7
    assert spec.policy_tags == ("research", "imaging")


def test_spec_identity_ignores_layout_and_comments_but_not_content() -> None:
    base = parse_spec(SPEC_TEXT)
    relaid = parse_spec("# a comment\n" + SPEC_TEXT.replace("[dicom, outcomes]", "\n  - outcomes\n  - dicom"))
    assert relaid.sha256 == base.sha256
    assert parse_spec(SPEC_TEXT.replace("seed: 7", "seed: 8")).sha256 != base.sha256
    # Ratios are exact decimals: a number and a string of the same value are the same spec.
    assert parse_spec(SPEC_TEXT.replace('train: "0.6"', "train: 0.6")).sha256 == base.sha256


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("retention: research-7y", "retention: research-7y\ncolour: blue", 22, "unknown field 'colour'"),
        ("  body_part: [CHEST]", "  body_part: [CHEST]\n  bodypart: [HEAD]", 8, "unknown field 'bodypart' in cohort"),
        ("modalities: [dicom, outcomes]", "modalities: [dicom, xray]", 4, "unknown modality 'xray'"),
        ('test: "0.2"', 'test: "0.3"', 19, "must sum to 1"),
        ("seed: 7", "seed: seven", 18, "split.seed must be an integer"),
        ("  age_band: {min: 18, max: 89}", "  age_band: {min: 90, max: 89}", 8, "min is above max"),
        ("start: 2020-01-01", "start: someday", 9, "date_window.start must be a date"),
        ("owner: imaging-research\n", "", 1, "missing required field(s): owner"),
        ("name: chest_ct", "name: Chest CT!", 1, "name 'Chest CT!' must match"),
        ("  column: outcome", "  column: outcome: x", 13, "not valid YAML"),
    ],
)
def test_spec_errors_name_the_file_and_line(old: str, new: str, line: int, message: str) -> None:
    text = SPEC_TEXT.replace(old, new)
    assert text != SPEC_TEXT
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/chest.yaml")
    assert str(info.value).startswith(f"specs/chest.yaml:{line}: "), str(info.value)
    assert message in str(info.value)
    assert info.value.line == line


def test_label_available_needs_label_rules() -> None:
    start, end = SPEC_TEXT.index("labels:"), SPEC_TEXT.index("split:")
    with pytest.raises(SpecError, match="label_available needs label rules"):
        parse_spec(SPEC_TEXT[:start] + SPEC_TEXT[end:], "x.yaml")


def test_spec_folder_loading_and_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SPEC_TEXT)
    assert [s.name for s in load_specs(tmp_path)] == ["chest_ct"]
    (tmp_path / "b.yml").write_text(SPEC_TEXT)
    with pytest.raises(SpecError, match=r"b\.yml:1: dataset name 'chest_ct' is also used by"):
        load_specs(tmp_path)
    (tmp_path / "c.yaml").write_bytes(b"\xff\xfe name")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(tmp_path / "c.yaml")


def test_shipped_sample_specs_load() -> None:
    specs = load_specs(shipped_specs_dir())
    assert {s.name for s in specs} >= {"chest_ct_outcomes", "brain_mr", "notes_labs"}
    for spec in specs:
        assert spec.owner and spec.purpose and spec.retention and spec.policy_tags
