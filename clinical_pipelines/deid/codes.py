"""The standard's code meanings: a coded concept's meaning as PS3.16 gives it (pydicom's copy of the tables).

A Code Meaning equal to the one the coding scheme gives its (scheme, code value) was written by the
standard, not by a person: the DICOM engine keeps it inside content trees and the residual scan does
not re-read it. Any other meaning (a local scheme, an edited text) is judged as free text.
"""

from __future__ import annotations

from functools import cache

CODE_MEANING = 0x00080104


@cache
def standard_code_meanings() -> dict[tuple[str, str], str]:
    """(coding scheme designator, code value) -> code meaning, from pydicom's tables of the standard's concepts."""
    from pydicom.sr._concepts_dict import concepts

    found: dict[tuple[str, str], str] = {}
    for scheme, by_name in concepts.items():
        for codes in by_name.values():
            for code, (meaning, _cids) in codes.items():
                found[(scheme, code)] = meaning
    return found


def is_standard_code_meaning(item: object) -> bool:
    """Whether ``item`` (a code sequence item) has the Code Meaning the standard gives its scheme and code value."""
    get = getattr(item, "get", None)
    if get is None or CODE_MEANING not in item:  # type: ignore[operator]
        return False
    scheme, code, meaning = (str(get(k, "") or "").strip() for k in ("CodingSchemeDesignator", "CodeValue",
                                                                      "CodeMeaning"))  # fmt: skip
    known = standard_code_meanings().get((scheme, code))
    return known is not None and known.casefold() == meaning.casefold()


@cache
def standard_meaning_texts() -> frozenset[str]:
    """Every code meaning of the standard's tables, case-folded: words of the coding schemes, not of a person."""
    return frozenset(meaning.casefold() for meaning in standard_code_meanings().values())
