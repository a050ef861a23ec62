"""``python -m clinical_pipelines.cli``: the same as the ``clinical-pipelines`` command."""

from clinical_pipelines.cli import main

main()
