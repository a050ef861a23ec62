"""De-identification engines: DICOM (PS3.15 Annex E), clinical notes, tables. No Dagster here."""
