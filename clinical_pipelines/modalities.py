"""The modalities, defined once: how a drop classifies its files, and what a curated version holds."""

# How drop.json classifies a file (a contract): each is one raw, validated and de-identified asset.
DROP_MODALITIES = ("dicom", "notes", "tabular")
# What curated versions, specs and training samples hold: tables are split by their schema.
DATASET_MODALITIES = ("dicom", "notes", "labs", "outcomes")
# The file format of each modality's objects (the Dagster catalog's kinds).
FORMATS = {"dicom": "dicom", "notes": "text", "tabular": "csv", "labs": "csv", "outcomes": "csv"}
