"""The validated stage: parse raw items for real and run Great Expectations suites over them. No Dagster here."""
