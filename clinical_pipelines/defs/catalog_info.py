"""What the Dagster catalog says about each asset beyond its key: who owns it and what kind of data it holds."""

from clinical_pipelines.modalities import FORMATS

# Owns the per-drop stage assets (landing, raw, validated, de-identified); datasets are owned by their spec.
PLATFORM_TEAM = "team:clinical-data-platform"
STAGE_OWNERS = [PLATFORM_TEAM]
# Validated tables are kept as Parquet (typed, schema-checked); every other stage keeps the modality's own format.
VALIDATED_FORMATS = {**FORMATS, "tabular": "parquet"}
TRAINING_KINDS = {"webdataset"}


def spec_owners(owner: str) -> list[str]:
    """A spec's ``owner`` as Dagster owners: an e-mail address as it is, anything else as ``team:<owner>``."""
    return [owner if "@" in owner or owner.startswith("team:") else f"team:{owner}"]


def format_kinds(modalities: tuple[str, ...] | list[str], formats: dict[str, str] = FORMATS) -> set[str]:
    """The kinds (file formats) of assets holding these modalities."""
    return {formats[m] for m in modalities}
