"""The landing zone: drop manifests, safe names, content sniffing, discovery. No Dagster here."""
