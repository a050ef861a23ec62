"""The Dagster layer: thin wiring of the engines to assets, checks, sensors and schedules."""
