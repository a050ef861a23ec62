"""Partitions shared by every drop-level stage."""

import dagster as dg

# One partition per landing drop, keyed "<source>/<drop_id>".
drops_partitions = dg.DynamicPartitionsDefinition(name="drops")
