"""What every step process of a run needs imported, loaded once per run by the forkserver.

The multiprocess executor starts each step in a new process; with the ``forkserver`` start method
that process is forked from a server that imported this module once, so a step no longer pays for
Great Expectations, Presidio and spaCy imports (seconds each) in every process. Only imports: no
model is loaded and no resource opened here (a forked process must not share open files or threads).
"""

from __future__ import annotations

from clinical_pipelines.deid import notes as _notes  # noqa: F401  (Presidio and spaCy, torch hidden)
from clinical_pipelines.validate.expectations import import_gx

import_gx()
