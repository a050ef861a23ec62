"""clinical-pipelines: governed, versioned, training-ready clinical datasets on Dagster."""

__version__ = "0.1.0"
