"""Stage 1: landing → raw. Sensor, ingest assets, and the reject job."""

import dagster as dg

from clinical_pipelines.defs.ingest.assets import ingest_drop, landing_drops
from clinical_pipelines.defs.ingest.jobs import process_drop_job, reject_landing_job
from clinical_pipelines.defs.ingest.sensors import landing_sensor

defs = dg.Definitions(
    assets=[landing_drops, ingest_drop],
    jobs=[process_drop_job, reject_landing_job],
    sensors=[landing_sensor],
)
