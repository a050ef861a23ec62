"""The raw zone: accepted bytes, content-addressed, write-once, encrypted. No Dagster here."""
