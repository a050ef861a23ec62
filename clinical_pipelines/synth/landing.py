"""Writing drops into a landing-zone directory tree."""

from __future__ import annotations

import pathlib

from clinical_pipelines.synth.atomic import atomic_write_bytes
from clinical_pipelines.synth.models import SynthDrop, check_relative_path

MANIFEST_NAME = "drop.json"


def write_drop_to_dir(landing_root: pathlib.Path, drop: SynthDrop, *, durable: bool = False) -> pathlib.Path:
    """Write ``landing_root/<source>/<drop_id>/<files...>`` and then ``drop.json``, LAST.

    Every file is written atomically (temporary sibling + ``os.replace``), so a reader that
    sees ``drop.json`` sees a complete drop. ``durable=True`` also fsyncs files and
    directories. Returns the drop directory.
    """
    drop_dir = pathlib.Path(landing_root) / drop.source / drop.drop_id
    for f in sorted(drop.files, key=lambda f: f.path):
        check_relative_path(f.path)
        atomic_write_bytes(drop_dir.joinpath(*f.path.split("/")), f.data, durable=durable)
    drop_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(drop_dir / MANIFEST_NAME, drop.manifest_bytes(), durable=durable)
    return drop_dir
