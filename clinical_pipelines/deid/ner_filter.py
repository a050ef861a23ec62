"""Which statistical NER guesses are clinical vocabulary rather than identifiers.

spaCy's small English model, trained on news and web text, labels much clinical language as people,
organisations, places or dates: eponyms ("Murphy sign", "Foley catheter"), codes and measurements
("J44.1", "Hgb 6.8"), durations and frequencies ("6 weeks", "daily"). These rules apply only to
results of Presidio's ``SpacyRecognizer``; pattern recognizers (ours and Presidio's) are never
filtered here. Each rule is a property of the language, not of any particular text:

- a person's or group's name holds no digit, and an organisation or place name no code or measurement;
- in a text that uses capitals, an all lower-case span is not a proper name;
- an eponym is a capitalised word followed by the kind of thing named after it (sign, syndrome,
  catheter, score...), or a span that ends with such a word;
- an age ("96-year-old") is no date, nor are words without a digit or a month ("today", "weekly");
- a one-word span at the start of a line followed by ``:`` is a section heading ("Neuro:"), unless it is a
  census given name that is no English word (a speaker, "Jeremiah:");
- a span holding or followed by a dose ("Tylenol 650 mg", "Augmentin 875 BID") is a medication order, and a span
  that is a medicine's name in the DrugBank/MeSH dictionary of ``drug-named-entity-recognition`` is a medicine
  (unless it is also a census name or a place: "Allegra");
- a person or group guess made only of ordinary English words (``web2``'s lower-case entries), none of them a
  census given name or surname, is a service, finding or heading ("Physical Therapy", "Neurology"); place and
  organisation guesses are not filtered so (their names are often made of words: "Twin Falls", facilities);
- a duration or count ("2 weeks", "48 hours", "Day 5", "POD 2") or a bare number of up to three digits is no date;
- an organisation or group guess that is one acronym of two to five capitals ("COPD", "ER") or a single
  initial is an abbreviation, and so is a place guess of that form right after a measurement ("40 mg IV",
  "96% RA"); person names are not filtered this way, and facility names are found by the facility
  recognizer, not by this guess.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult

NER_RECOGNIZER = "SpacyRecognizer"
_NAMED = {"PERSON", "ORGANIZATION", "NRP", "LOCATION"}

#: Head nouns of medical eponyms: "<Name> sign", "<Name>'s syndrome", "<Name>-<Name> score".
EPONYM_HEADS = (
    "sign", "signs", "syndrome", "disease", "score", "scale", "criteria", "classification", "stage", "grade", "index",
    "catheter", "tube", "line", "drain", "forceps", "retractor", "procedure", "operation", "maneuver",
    "manoeuvre", "test", "reflex", "repair", "fracture", "palsy", "lymphoma", "sarcoma", "tumor", "tumour", "ulcer",
    "phenomenon", "triad", "node", "nodes", "method", "technique", "rule", "rules", "equation", "formula",
    "protocol", "incision", "hernia", "cyst", "diverticulum", "contracture", "chorea", "encephalopathy",
    "thyroiditis", "esophagus", "oesophagus", "cell", "cells", "dementia", "duct", "gland", "membrane", "ligament",
    "trocar", "needle", "clamp", "suture", "stitch", "flap", "graft", "shunt", "stent", "pump", "mask", "splint",
    "valve", "class", "patch", "monitor", "triangle", "chart", "point", "canal", "pouch", "body", "bodies", "bundle",
    "frame", "lift", "checklist", "inventory", "questionnaire", "breathing", "respiration", "respirations",
)  # fmt: skip
_HEAD = r"(?:" + "|".join(EPONYM_HEADS) + r")\b"
# A grade or class may stand between the name and the head ("Bosniak IIF cyst", "Salter-Harris II fracture").
_FOLLOWED_BY_HEAD = re.compile(
    rf"(?:'s)?(?:[ \t]*(?:-|/|and|&)[ \t]*[A-Z][\w'\-]*)*(?:[ \t]+(?:[IVX]{{1,4}}[A-F]?|\d[A-Za-z]?))?[ \t]+{_HEAD}",
    re.IGNORECASE,
)
_ENDS_WITH_HEAD = re.compile(rf"\b{_HEAD}$", re.IGNORECASE)
#: One or two words in title case between the name and the head ("Berg Balance Scale", "Young Mania Rating Scale").
_HEAD_AFTER_WORDS = re.compile(rf"(?:'s)?(?:[ \t]+[A-Z][a-z]+){{1,2}}[ \t]+(?i:{_HEAD})")
#: A classification's grade after the name ("Hinchey III", "Gustilo IIIB", "ASA 4E").
_GRADE_AT_END = re.compile(r"[ \t]+(?:[IVX]{1,4}[A-Ca-c]?|\d[A-E]?)$")
#: Binomial names of microbes: a genus in title case, then its species in lower case ("Klebsiella pneumoniae").
_SPECIES_NEXT = re.compile(r"[ \t]+[a-z]+(?:ae|us|is|um|ii|i|a|es|ens|ans|ica|ilis)\b")
#: A measurement's value: up to three digits, a decimal or a percentage; not a postcode after a state or region
#: abbreviation ("NY 10027", "NSW 2000").
_NUMBER_NEXT = re.compile(r"[ \t]*[:=]?[ \t]*\d{1,3}(?![\d])")
_TRAILING_NUMBER = re.compile(r"[ \t]+[\d.,/:+=\-]+$")
_ACRONYM = re.compile(r"[A-Z]{2,5}s?|[A-Z]\.?")
_AGE_EXPRESSION = re.compile(
    r"\d+\+?[ \t]*-?[ \t]*(?:years?|yrs?|y)[ \t]*-?[ \t]*(?:old|o\b|of[ \t]+age\b)|\d+\+?[ \t]*y/?o\b"
    r"|\bage[ds]?\b[ \t:]*(?:of|is)?[ \t]*\d+",
    re.IGNORECASE,
)
_PLACEHOLDERS_ONLY = re.compile(r"(?:[\s,;:()]*\[?[A-Z_]+\]|[\s,;:()]*\[[A-Z_]+\]?)+[\s,;:()]*")
_CODE_OR_MEASURE = re.compile(r"[A-Za-z]\d|\d[.,/:]\d|\d[ \t]*(?:%|(?:L|mL|mg|kg|cm|mm|mmHg|bpm)\b)")
_DOSE = (
    r"\d+(?:[.,/]\d+)*[ \t]*(?i:mg|mcg|µg|g|ml|units?|iu|tabs?|tablets?|caps?|puffs?|drops?|meq|mmol)\b"
    r"|\d+(?:[.,/]\d+)*[ \t]+(?i:bid|tid|qid|qd|qhs|prn|daily|nightly)\b"
)
_DOSE_AT_END = re.compile(rf"[ \t](?:{_DOSE})$")
_DOSE_NEXT = re.compile(rf"[ \t]+(?:{_DOSE})")
_AFTER_A_NUMBER = re.compile(r"\d\S*(?:[ \t]+[A-Za-z/]{1,4}\.?)?[ \t]+(?:on[ \t]+)?$")
_TITLE_BEFORE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Doctor)\.?[ \t]*$", re.IGNORECASE)

_MONTH_WORD = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?",
    re.IGNORECASE,
)
_NUMERIC_DAY_MONTH = re.compile(r"(?<!\d)(\d{1,2})[/\-.](\d{1,2})(?!\d)")
_ORDINAL_DAY = re.compile(r"\b(?:[1-9]|[12]\d|3[01])(?:st|nd|rd|th)\b", re.IGNORECASE)


def has_date_element(value: str) -> bool:
    """True when ``value`` names a month or a day (a month word, ``d/m`` with valid numbers, an ordinal day)."""
    if _MONTH_WORD.search(value) or _ORDINAL_DAY.search(value):
        return True
    for m in _NUMERIC_DAY_MONTH.finditer(value):
        a, b = int(m.group(1)), int(m.group(2))
        if 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12:
            return True
    return False


_DURATION_UNIT = r"(?:sec(?:ond)?s?|min(?:ute)?s?|h(?:ou)?rs?|h|days?|d|nights?|weeks?|wks?|months?|mos?|years?|yrs?)"
_DURATION = re.compile(
    rf"(?i:(?:(?:for|over|x|the[ \t]+(?:past|last|next)|past|last|next|within|about|approx\.?|~)[ \t]*)?"
    rf"\d+(?:\.\d+)?(?:[ \t]*(?:-|to)[ \t]*\d+(?:\.\d+)?)?\+?[ \t]*-?[ \t]*{_DURATION_UNIT}\b\.?"
    rf"(?:[ \t]+(?:ago|prior|later|earlier|post-?op))?"
    r"|(?:hospital[ \t]+|post-?op(?:erative)?[ \t]+)?(?:day|pod|hd|cycle|week|wk|month|year)[ \t]*#?[ \t]*\d{1,3})"
)
_ORDINAL_COUNT = re.compile(
    rf"(?i:(?:the[ \t]+)?\d{{1,3}}(?:st|nd|rd|th)[ \t]+"
    rf"(?:{_DURATION_UNIT}|doses?|cycles?|visits?|attempts?|trimester)\b)"
)
_CLOCK = re.compile(r"(?i:\d{1,2}(?::[0-5]\d)?[ \t]*o['\u2019]?[ \t]*clock)")
_SHORT_NUMBER = re.compile(r"[x~]?\d{1,3}(?:\.\d+)?\+?")
_WORDS = re.compile(r"[^\W\d_]+")


def _ordinary_words_only(value: str) -> bool:
    """Every word of ``value`` is an ordinary English word (``web2``), none is a census given name or surname and the
    whole is no GeoNames place ("Flagstaff"): a service, a finding or a heading written in title case, not a name."""
    from clinical_pipelines.deid import lexicons

    words = [w.lower() for w in _WORDS.findall(value)]
    if not words:
        return False
    common, given, family = lexicons.common_words(), lexicons.given_names(), lexicons.surnames()
    if " ".join(words) in lexicons.place_names():
        return False
    return all(w in common and w not in given and w not in family for w in words)


_DOSE_FORM = re.compile(r"[ \t]+(?i:ds|ss|xr|xl|er|sr|cr|la|hfa|odt|ec|inj|iv|po|im|sc)\.?$")


def is_medicine(value: str) -> bool:
    """A medicine's name (generic or brand, optionally with a release or dose-form suffix: "Toprol XL") that is
    not also a census given name or surname or a GeoNames place ("Allegra" is both), alone or among ordinary
    English words ("Restart Keppra")."""
    from clinical_pipelines.deid import lexicons

    def medicine(low: str) -> bool:
        names = (lexicons.given_names(), lexicons.surnames(), lexicons.place_names())
        return low in lexicons.drug_names() and not any(low in known for known in names)

    low = _DOSE_FORM.sub("", value).lower().strip()
    if medicine(low):
        return True
    # "Restart Keppra": medicines among ordinary English words, and no name
    words = [w.lower() for w in _WORDS.findall(low)]
    common = lexicons.common_words()
    return any(medicine(w) for w in words) and all(medicine(w) or (w in common and not _named(w)) for w in words)


#: Routes, frequencies and units of medication orders and measurements.
_ORDER_WORD = re.compile(
    r"(?i:po|iv|im|sc|sq|sl|pr|ng|inh|neb|bid|tid|qid|qd|qhs|qam|qpm|prn|stat|daily|q\d{1,2}h|mg|mcg|g|kg|ml|l|h|hr"
    r"|min|units?|iu|meq|mmol|dl|mmhg|trickle)"
)
#: An abbreviation of capitals, optionally with lower-case letters between and a number ("DTaP", "IPV", "ASQ-3").
_CAPS_ABBREVIATION = re.compile(r"[A-Z](?=[A-Za-z]*[A-Z])[A-Za-z]{1,6}(?:-\d{1,2})?")


def _abbreviations_only(value: str) -> bool:
    """Every word of ``value`` is an order word or unit (``/`` joins units: "KG/MIN"), an abbreviation in capitals or
    a medicine: the guess is an order, a unit or a vaccine, not a name. A name holds at least one other word."""
    words = [w for w in re.split(r"[\s()\-,;.]+|(?<=[A-Za-z])/(?=[A-Za-z])", value) if w]
    if not words:
        return False
    if all(w.isdigit() for w in words):
        return False
    if not ("-" in value or any(_ORDER_WORD.fullmatch(w) or not w.isupper() or is_medicine(w) for w in words)):
        return False  # words in capitals and nothing else: a place or an organisation may be written so ("GRANGE")
    return all((w.isdigit() and len(w) <= 2) or _ORDER_WORD.fullmatch(w) or _CAPS_ABBREVIATION.fullmatch(w)
               or is_medicine(w) for w in words)  # fmt: skip


_MEASURE_FRACTION = re.compile(r"\b\d{2,3}/\d{2,3}\b")
_FOUR_DIGITS = re.compile(r"\d{4}")  # a year, or a number that may be a house number, a postcode or a code
_CLOCK_TIME = re.compile(r"(?<!\d)(?:[01]?\d|2[0-3]):[0-5]\d(?!\d)|(?i:\d{1,2}[ \t]*[ap]\.?m\b)")


def _genus(value: str) -> bool:
    """One word in title case that is no census name or place: the genus of a binomial name."""
    from clinical_pipelines.deid import lexicons

    low = value.strip().lower()
    return (value.strip().istitle() and " " not in value.strip() and low not in lexicons.given_names()
            and low not in lexicons.surnames() and low not in lexicons.place_names())  # fmt: skip


def _latin(word: str) -> bool:
    """A lower-case word no English dictionary holds ("cloacae", "aeruginosa"): a species epithet, not a verb."""
    from clinical_pipelines.deid.structure import _english_word

    return not _english_word(word)


def _named(word: str) -> bool:
    from clinical_pipelines.deid import lexicons

    return word in lexicons.given_names() or word in lexicons.surnames()



def _region_code(value: str) -> bool:
    """A US state or territory code, or a country written as letters ("UK", "USA"); ISO's other two-letter codes
    are not counted ("ER" is Eritrea's code and the emergency room)."""
    from clinical_pipelines.deid.recognizers import US_STATES

    return value.rstrip("s.") in US_STATES or value.rstrip(".") in {"US", "USA", "UK", "UAE", "EU"}


def _given_name(value: str) -> bool:
    """A census given name that is no ordinary English word ("Michael:" is a speaker, "Plan:" a heading)."""
    from clinical_pipelines.deid import lexicons

    low = value.lower()
    return low in lexicons.given_names() and low not in lexicons.common_words()


def is_eponym(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is (part of) an eponymous clinical term, not a person named by a title."""
    if _TITLE_BEFORE.search(text, max(0, start - 12), start):
        return False
    value = _TRAILING_NUMBER.sub("", text[start:end])  # "Wells score 4"
    head_after = _FOLLOWED_BY_HEAD.match(text, end) or _HEAD_AFTER_WORDS.match(text, end)
    return bool(head_after or _ENDS_WITH_HEAD.search(value))


def is_clinical_ner_guess(text: str, result: RecognizerResult, *, case_informative: bool) -> bool:
    """True when a SpacyRecognizer ``result`` is clinical vocabulary by one of the module's rules."""
    value = text[result.start : result.end]
    entity = result.entity_type
    around = text[max(0, result.start - 1) : result.end + 1]
    if _PLACEHOLDERS_ONLY.fullmatch(value) or _PLACEHOLDERS_ONLY.fullmatch(around):
        return True  # our own replacements read again ("[FACILITY]\n[ADDRESS")
    if entity == "DATE_TIME":
        # An age is no date ("96-year-old"; ages over 89 are found by the age recognizer), nor are words without
        # a digit or a month ("today", "daily", "three months", "Thursday"). Other DATE_TIME guesses are kept:
        # "in 2159" may be a house number as well as a year.
        if _ORDINAL_COUNT.fullmatch(value):
            return True  # "the 2nd day", "3rd cycle": which one of a series, not a day of a month
        if has_date_element(value):
            return False
        if _DURATION.fullmatch(value) or _SHORT_NUMBER.fullmatch(value) or _CLOCK.fullmatch(value):
            return True  # a duration or a count ("2 weeks", "x3 days", "Day 5", "48 hours"), a bare "40"
        if re.search(_DOSE, value) or _MEASURE_FRACTION.search(value):
            return True  # a dose or a pressure inside the guess ("10 mg over 24 hours", "118/64")
        if not (_FOUR_DIGITS.search(value) or _CLOCK_TIME.search(value)):
            return True  # a number with words but no year, clock time, month or day ("6 this morning", "Apgar 8")
        return _AGE_EXPRESSION.search(value) is not None or not any(c.isdigit() for c in value)
    if entity not in _NAMED:
        return False
    if _DOSE_AT_END.search(value) or _DOSE_NEXT.match(text, result.end):
        return True  # a medication order ("Tylenol 650 mg", "Augmentin 875 BID"), not a name or a place
    if is_medicine(value):
        return True  # "Spiriva", "Keytruda", "Bactrim DS"
    species = _SPECIES_NEXT.match(text, result.end)
    if species and _genus(value) and (entity in ("ORGANIZATION", "NRP", "LOCATION") or _latin(species.group().strip())):
        return True  # "Klebsiella pneumoniae", "Staphylococcus aureus"; a PERSON only before a word English lacks
    if entity in ("ORGANIZATION", "NRP") and _GRADE_AT_END.search(value) and " " in value.strip():
        return True  # a classification and its grade ("Hinchey III", "ASA 4E"), not an organisation
    if entity in ("ORGANIZATION", "NRP", "LOCATION") and _abbreviations_only(value):
        return True  # "PO BID", "KG/MIN", "mcg/dL", "DTaP-IPV", "ASQ-3", "MMRV (ProQuad": orders, units, vaccines
    if any(c.isdigit() for c in value):
        # A person's name has no digit; an organisation or place may ("Castelao 66"), unless the digits make a
        # code or a measurement ("G20", "N40.0", "INR 2.4", "MoCA 24/30").
        return entity in ("PERSON", "NRP") or _CODE_OR_MEASURE.search(value) is not None or is_eponym(
            text, result.start, result.end
        )
    if entity in ("ORGANIZATION", "NRP") and _ACRONYM.fullmatch(value):
        return True
    if entity == "LOCATION" and _ACRONYM.fullmatch(value) and not _region_code(value):
        return True  # "ER", "ICU", "PACU": an abbreviation, not a state or country code
    if _ACRONYM.fullmatch(value) and _NUMBER_NEXT.match(text, result.end):
        return True  # the name of a measurement before its value ("EF 35%", "FiO2 40")
    if entity == "LOCATION" and _ACRONYM.fullmatch(value) and _AFTER_A_NUMBER.search(text, max(0, result.start - 16),
                                                                                    result.start):  # fmt: skip
        return True  # a route or unit after a measurement ("40 mg IV", "96% RA", "2L NC"), not a place
    if case_informative and value.islower():
        return True
    # Places and organisations (facilities are identifiers) are often made of ordinary words ("Twin Falls",
    # "Valley Family Practice"); a person's name is not.
    if entity in ("PERSON", "NRP") and _ordinary_words_only(value):
        return True  # "Physical Therapy", "Skilled Nursing Facility", "Normal Sinus Rhythm": no name in it
    line_start = result.start == 0 or text[result.start - 1] == "\n"
    if line_start and " " not in value and text[result.end : result.end + 1] == ":" and not _given_name(value):
        return True
    return is_eponym(text, result.start, result.end)


def drop_clinical_ner(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """``results`` without the SpacyRecognizer guesses that :func:`is_clinical_ner_guess` calls clinical."""
    case_informative = any(c.isupper() for c in text) and any(c.islower() for c in text)

    def from_ner(r: RecognizerResult) -> bool:
        return (r.recognition_metadata or {}).get("recognizer_name") == NER_RECOGNIZER

    return [
        r for r in results if not (from_ner(r) and is_clinical_ner_guess(text, r, case_informative=case_informative))
    ]
