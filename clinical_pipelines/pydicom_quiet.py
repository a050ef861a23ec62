"""pydicom configured so that no value read from a file ever reaches a log, stderr or a warning.

pydicom's defaults validate values on read (``reading_validation_mode=WARN``) and report problems
with the value in the message (``Invalid value for VR IS: 'JOHN SMITH'``), both as a ``UserWarning``
(printed to stderr, so into Dagster's compute logs) and on the ``pydicom`` logger. A DICOM file is
attacker-controlled and PHI-bearing, so here:

- reading validation is off (``IGNORE``): the engines judge values themselves (validation's
  parsers, the de-identifier's ``malformed_date`` / ``deid_failed`` and friends), and a value that
  cannot be handled becomes a quarantine record with a reason, never a message;
- writing validation is off too: what is written is de-identified output, and a warning about it
  would still copy text into a log;
- everything pydicom still logs is reduced to its element tags and VR names (a filter on the
  ``pydicom`` logger), and its warnings are silenced (their logger copy is the reduced one).

:func:`configure` is idempotent and is applied when the DICOM engines are imported.
"""

from __future__ import annotations

import logging
import re
import warnings

_TAG = re.compile(r"\(\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\)")
_VR = re.compile(r"\bVR (?:of )?'?([A-Z]{2})\b")
_DONE = False


def reduce_message(message: str) -> str:
    """A pydicom message reduced to the element tags and VR names it names: no value survives."""
    tags = sorted({" ".join(t.split()).replace(" ", "") for t in _TAG.findall(message)})[:4]
    vrs = sorted(set(_VR.findall(message)))[:4]
    parts = ["pydicom reported a problem (message withheld: it may quote a value)"]
    if tags:
        parts.append("tag " + " ".join(tags))
    if vrs:
        parts.append("VR " + " ".join(vrs))
    return "; ".join(parts)


class _ReduceToTagAndVR(logging.Filter):
    """Rewrites every record of the ``pydicom`` logger to :func:`reduce_message` of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: say nothing of it
            message = ""
        record.msg, record.args = reduce_message(message), ()
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def configure() -> None:
    """Apply the settings above (once per process; later calls only re-check the warnings filter)."""
    global _DONE
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _ReduceToTagAndVR) for f in logger.filters):
        logger.addFilter(_ReduceToTagAndVR())
    if not _DONE or not any(
        action == "ignore" and getattr(module, "pattern", None) == r"pydicom(\.|$)"
        for action, _msg, _cat, module, _line in warnings.filters
    ):
        warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    _DONE = True
