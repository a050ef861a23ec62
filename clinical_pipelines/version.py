"""The code version stamped on every materialization, manifest and record."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from clinical_pipelines import __version__


@functools.cache
def code_version() -> str:
    """``<package version>+<12 hex of the sha256 over the package's .py sources>``.

    Stable for a given source tree whatever the checkout path or git state, and
    different as soon as any module changes.
    """
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"
