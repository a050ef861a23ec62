"""Curated dataset versions: specs, patient-level splits, hash-addressed manifests. No Dagster here."""
