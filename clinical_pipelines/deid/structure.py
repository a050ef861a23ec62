"""Recognizers that generalise by structure and by dictionaries from packages, not by templates.

- :class:`AddressBlockRecognizer`: postal addresses by their structure. An anchor is a street line (a house
  number and a street-type word in any of the common European or US conventions, "12 Oak Street",
  "Hauptstrasse 75", "Rue des Lilas 4", "Bécsi utca 35"), a military address (USPS Publication 28: PSC/CMR/Unit
  and Box, APO/FPO/DPO with AA/AE/AP and a ZIP) or a unit designator (Apt, Suite, Unit...). From the anchor the
  block is extended over the following pieces that an address is made of, on the same line or the next lines:
  unit designators, a city (capitalised words), a region code, a postal code of a common shape, a country
  (GeoNames' list). A number followed by capitalised words and a number ("12 Linden 4") is a street only inside
  such a block (with a unit, postal code or country) or after an address word ("lives at", "address").
- :class:`PlaceNameRecognizer`: city and US state names from GeoNames (cities of 15,000 or more), written with
  a capital, that are not ordinary English words, after a locative word ("in", "from", "near"...), alone on a
  line, or before ", Region".
- :class:`DictionaryNameRecognizer`: person names from the US census name lists: a given name followed by one or
  two capitalised words ("Teresa Okafor"), "Surname, Given", and given names alone when they are not ordinary
  English words ("Molly"); sequences of capitalised words written with letters outside ASCII that are not
  English words ("Friðbjarnardóttir"); and any ``Label:`` at the start of a line followed by capitalised words
  one of which is a dictionary given name or surname ("Decedent: Hjalmar Lind").

Eponyms ("Bell palsy", "Boston criteria") are left alone, as for spaCy's guesses (:func:`ner_filter.is_eponym`).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator

from clinical_pipelines.deid import lexicons
from clinical_pipelines.deid.ner_filter import is_eponym
from clinical_pipelines.deid.nlp import unused_backends_hidden

with unused_backends_hidden():  # torch and transformers: a second of imports, never used
    from presidio_analyzer import EntityRecognizer, LocalRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from spacy.lang.en.stop_words import STOP_WORDS

_MONTHS_AND_DAYS = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "january",
    "february", "march", "april", "june", "july", "august", "september", "october", "november", "december",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
}  # fmt: skip

# A word of any Latin script, capitalised ("Hélène") or in capitals ("TAMPERE").
_U = r"[A-ZÀ-ÖØ-Þ\u0100-\u024f]"
_L = r"[^\W\d_]"
_CAPWORD = rf"(?:{_U}(?:{_L}|['\u2019\-])*{_L}|{_U})"
_CAPWORD_LONG = rf"{_U}(?:{_L}|['\u2019\-])*{_L}"
#: Lower-case particles inside place names ("Tarazona de Guareña", "Puch bei Hallein").
_PARTICLE = (
    r"(?:de[ \t]+la|de[ \t]+los|de[ \t]+las|del|dei|degli|della|delle|dello|des|de|la|les|le|di|dos|das|da|do|du|aux"
    r"|von|van|der|den|ter|ten|zum|zur|bei|am|an|im|sur|sous|en|upon|on)\b"
)
_CITY = rf"{_CAPWORD_LONG}(?:(?:[ \t]+|-)(?:{_PARTICLE}[ \t]+)?{_CAPWORD_LONG}){{0,3}}"

#: Street-type words that precede the name (Romance, Slavic, Greek conventions), case-insensitive.
_STREET_PREFIX = (
    r"(?i:rue|rua|r\.|via|viale|vicolo|corso|piazza|piazzale|largo|calle|c/|carrer|avenida|avda\.?|av\.|paseo"
    r"|camino|carretera|plaza|pra[çc]a|travessa|estrada|alameda|boulevard|bd\.?|chemin|all[ée]e|impasse|quai"
    r"|place|cours|route|ul\.|ulica|aleja|al\.|strada|str\.|bulevardul|calea|odos|leoforos)"
)
#: Street-type endings of compound street names (Germanic, Nordic, Finnic, Hungarian, Baltic conventions).
_STREET_END = (
    r"(?:stra(?:ß|ss)e|str\.|weg|platz|gasse|allee|ring|damm|ufer|chaussee|laan|straat|plein|gracht|kade|dijk"
    r"|hof|vej|gade|stræde|vænget|alle|vägen|väg|gatan|gata|gränd|backen|stigen|veien|vegen|veg|vei|gate|tie"
    r"|katu|kuja|polku|tanhua|kaari|rinne|utca|ulica|cesta|ulice|iela|gatv[eė]|tänav|tee)"
)
#: Street-type words written after the name as a word of their own ("Bécsi utca 35", "Fogd Drejers gate 93").
_STREET_WORD = (
    r"(?i:utca|út|u\.|tér|körút|ulica|ulice|cesta|gate|gata|gatan|vej|veg|vei|veien|vegen|väg|vägen|stra(?:ß|ss)e"
    r"|str\.|weg|platz|gasse|allee|laan|straat|plein|terrasse|tie|katu|kuja|street|st\.?|road|rd\.?|avenue|ave\.?"
    r"|lane|drive|way|square|sq\.?|place|row)"
)
_HOUSE = r"\d{1,5}[A-Za-z]?\b\.?"
#: A number followed by one of these is a dose or a measurement, not a house number or a name's neighbour.
_DOSE_UNIT = (
    r"(?i:mg|mcg|µg|g|kg|ml|l|units?|iu|tabs?|tablets?|caps?|puffs?|drops?|mmol|meq|%|mm|cm|bid|tid|qid|qd|prn)\b"
)
_LEAD = r"(?:\d{1,6}[A-Za-z]?[ \t]+){0,2}"
_US_SUFFIX = (
    r"(?i:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle"
    r"|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Square|Sq|Plaza|Plz|Loop|Alley|Row|Crescent|Path|Pike|Walk"
    r"|Crossing|Ridge|Heights|Grove|Commons|Close|Expressway|Expy|Freeway|Fwy|Route|Rte)"
)
_NAME_PART = rf"(?:{_CAPWORD}|{_PARTICLE}|\d+(?:st|nd|rd|th))"
_STREET_LINE = re.compile(
    rf"(?<![\w\-/]){_LEAD}(?:"
    # 12 Oak Street, 79 Wolfe St
    rf"\d{{1,6}}[A-Za-z]?[ \t]+(?:(?:[NSEW]|North|South|East|West)\.?[ \t]+)?(?:{_NAME_PART}[ \t]+){{1,4}}"
    rf"{_US_SUFFIX}\b\.?"
    # Rue des Buissons 386, 12 Rue de la Paix, ul. Siostrzana 48
    rf"|{_STREET_PREFIX}(?:[ \t]+{_NAME_PART}){{1,5}}(?:[ \t]+{_HOUSE})?"
    # Hauptstrasse 75, Doctor Gravemeijerstraat 91, Eichendorffstr. 41
    rf"|(?:{_CAPWORD}\.?[ \t]+){{0,3}}{_U}{_L}*{_STREET_END}(?:\b|(?<=\.))\.?[ \t]+{_HOUSE}"
    # Bécsi utca 35., Stensås terrasse 38
    rf"|(?:{_CAPWORD}[ \t]+){{1,3}}{_STREET_WORD}[ \t]+{_HOUSE}"
    r")"
)
#: "12 Linden 4", "Linden 4": a street only with more evidence (a block, or an address word before it). The words
#: are written in title case (not acronyms: "CPT 99213", "HR 88").
_TITLEWORD = rf"{_U}(?=(?:{_L}|['\u2019\-])*[a-zß-ÿ\u0101-\u024f])(?:{_L}|['\u2019\-])+"
_WEAK_STREET = re.compile(rf"(?<![\w\-/.,]){_LEAD}(?:{_TITLEWORD}[ \t]+){{1,4}}{_HOUSE}(?![ \t]*{_DOSE_UNIT})")
_MILITARY_FIRST = re.compile(
    rf"(?<![\w\-])(?:(?:PSC|CMR|Unit)[ \t]+\d{{3,5}},?[ \t]+Box[ \t]+\d{{2,5}}|(?:USS|USNS)[ \t]+{_CITY})"
)
_MILITARY_POST = r"(?:APO|FPO|DPO)[ \t]+(?:AA|AE|AP)[ \t]+\d{5}(?:-\d{4})?"
_UNIT = (
    r"(?:(?i:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Level|Lvl|Room|Rm|Bldg|Building)\.?|\#)[ \t]*[A-Za-z]?\d{1,5}"
    r"[A-Za-z]?\b"
)
#: Unit designators of dwellings and offices: evidence of a postal address on their own ("Room 4", "Unit 5 West"
#: and "Floor 3" are also wards and beds in a hospital, so they only continue a block).
_DWELLING = r"(?i:Apt|Apartment|Suite|Ste|Flat)\.?[ \t]*[A-Za-z]?\d{1,5}[A-Za-z]?\b"
_POSTAL = (
    r"(?:\d{5}-\d{4}|\d{2}-\d{3}|\d{3}[ ]\d{2}(?!\d)|\d{4}[ ]?[A-Z]{2}\b|[A-Z]\d[A-Z][ ]?\d[A-Z]\d"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}|\d{4,6})(?![\w\-])"
)
_REGION = r"[A-Z]{2,3}\b"
_PAREN = r"(?:[ \t]*\([^()\n]{1,30}\))?"
#: One piece of an address after the street or unit: ", Apt 4", " Springfield", ", IL", " 62704", " Spain".
_PIECE = rf"(?:{_UNIT}|{_MILITARY_POST}|{_POSTAL}|{_REGION}{_PAREN}|{_CITY}{_PAREN})"
_TAIL = re.compile(rf"(?:(?:[ \t]*,[ \t]*|[ \t]+){_PIECE})*")
#: A line that continues a block: pieces only (leading punctuation of lists and quotes is ignored).
_CONTINUATION = re.compile(rf"[ \t]*,?[ \t]*{_PIECE}(?:(?:[ \t]*,[ \t]*|[ \t]+){_PIECE})*[ \t]*[.,;]?[ \t]*")
_ADDRESS_WORDS = re.compile(
    r"(?i:\b(?:address|lives?|lived|living|resides?|resided|residing|located|moved|relocated)\b[^.\n]{0,20}$)"
)
_LINE_PREFIX = re.compile(r"[^\w\n(#]*")
_UNIT_BEFORE = re.compile(rf"(?<![\w\-]){_UNIT}[ \t]*,?[ \t]*$")


def _strong_piece(text: str) -> bool:
    """Whether an address tail holds a unit, postal code, military post office or country (not only words)."""
    if re.search(rf"{_DWELLING}|{_MILITARY_POST}|(?<![\w\-]){_POSTAL}", text):
        return True
    return any(m.group().lower() in lexicons.country_names() for m in re.finditer(_CITY, text))


def _result(entity: str, start: int, end: int, score: float, name: str, rid: str) -> RecognizerResult:
    return RecognizerResult(
        entity, start, end, score,
        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: name,
                              RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: rid,
                              RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True},
    )  # fmt: skip


class _Base(LocalRecognizer):
    ENTITY = ""

    def __init__(self) -> None:
        super().__init__(supported_entities=[self.ENTITY], name=type(self).__name__, supported_language="en")

    def load(self) -> None:  # dictionaries load lazily (lexicons caches them per process)
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if entities and self.ENTITY not in entities:
            return []
        found = [_result(self.ENTITY, s, e, score, self.name, self.id) for s, e, score in self.spans(text) if s < e]
        return EntityRecognizer.remove_duplicates(found)

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        raise NotImplementedError


class AddressBlockRecognizer(_Base):
    """Postal addresses by structure: a street, unit or military anchor extended over the pieces that follow."""

    ENTITY = "STREET_ADDRESS"
    MAX_LINES = 6

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        lines: list[tuple[int, int]] = []
        pos = 0
        for line in text.split("\n"):
            lines.append((pos, pos + len(line)))
            pos += len(line) + 1
        anchors: list[tuple[int, int, bool]] = []  # (start, end, strong)
        for rx, strong in ((_STREET_LINE, True), (_MILITARY_FIRST, True), (re.compile(_MILITARY_POST), True),
                           (re.compile(rf"(?<![\w\-]){_DWELLING}"), False), (_WEAK_STREET, False)):  # fmt: skip
            for m in rx.finditer(text):
                anchors.append((m.start(), m.end(), strong))
        anchors.sort(key=lambda a: (a[0], -a[1]))
        done_to = -1
        for start, end, strong in anchors:
            if end <= done_to:
                continue
            block_end, extended = self._extend(text, lines, end)
            if not strong:
                evidence = _strong_piece(text[end:block_end]) or _ADDRESS_WORDS.search(text, max(0, start - 40), start)
                unit_only = re.fullmatch(rf"[ \t]*{_DWELLING}", text[start:end]) is not None
                if not evidence or (unit_only and not extended):
                    continue
            # A street or a military first line on the line before a unit/postal anchor belongs to the block, and so
            # does a unit written before the street on its line ("Flat 9, 56 Orrin Street", "Level 2, 450 Garnet Rd").
            start = self._extend_back(text, lines, start)
            unit_before = _UNIT_BEFORE.search(text, max(0, start - 24), start)
            if unit_before is not None:
                start = unit_before.start()
            done_to = block_end
            yield start, block_end, 0.85

    def _extend(self, text: str, lines: list[tuple[int, int]], end: int) -> tuple[int, bool]:
        """End of the block that starts before ``end``: the same line's tail, then whole continuation lines."""
        tail = _TAIL.match(text, end)
        end = tail.end() if tail else end
        extended = end > (tail.start() if tail else end)
        index = next(i for i, (s, e) in enumerate(lines) if s <= end <= e)
        if text[end : lines[index][1]].strip(" \t,.;"):
            return end, extended
        blank = 0
        for s, e in lines[index + 1 : index + 1 + self.MAX_LINES]:
            prefix = _LINE_PREFIX.match(text, s, e)
            body_start = prefix.end() if prefix else s
            if body_start >= e:
                blank += 1
                if blank > 1:
                    break
                continue
            m = _CONTINUATION.fullmatch(text, body_start, e)
            if m is None:
                break
            end = e
            while end > body_start and text[end - 1] in " \t.,;":
                end -= 1
            extended = True
            blank = 0
        return end, extended

    @staticmethod
    def _extend_back(text: str, lines: list[tuple[int, int]], start: int) -> int:
        index = next(i for i, (s, e) in enumerate(lines) if s <= start <= e)
        line_start = lines[index][0]
        prefix = _LINE_PREFIX.match(text, line_start, lines[index][1])
        if index == 0 or (prefix.end() if prefix else line_start) < start:
            return start
        prev_s, prev_e = lines[index - 1]
        for rx in (_STREET_LINE, _MILITARY_FIRST, _WEAK_STREET):
            m = None
            for found in rx.finditer(text, prev_s, prev_e):
                m = found
            if m is not None and not text[m.end() : prev_e].strip(" \t,"):
                return m.start()
        return start


_LOCATIVE = re.compile(
    r"(?i:\b(?:in|from|to|at|near|of|via|visiting|visited|born|outside|around|towards?|city|town|village)"
    r"[ \t]+(?:the[ \t]+)?$)"
)


#: ", IL", ", Ontario", ", Spain" after a place name.
_REGION_AFTER = re.compile(rf",[ \t]*(?:[A-Z]{{2}}\b|{_CITY})")


def _capitalised_runs(text: str, max_words: int = 3) -> Iterator[tuple[int, int, str]]:
    """Every run of 1..max_words capitalised words (single spaces or hyphens between), longest first per start."""
    words = [(m.start(), m.end()) for m in re.finditer(rf"(?<![\w\-]){_CAPWORD_LONG}(?![\w])", text)]
    for i in range(len(words)):
        for n in range(min(max_words, len(words) - i), 0, -1):
            run = words[i : i + n]
            if all(text[a[1] : b[0]] in (" ", "-") for a, b in itertools.pairwise(run)):
                yield run[0][0], run[-1][1], text[run[0][0] : run[-1][1]]


def _ordinary(word: str) -> bool:
    low = word.lower()
    return low in STOP_WORDS or low in lexicons.common_words() or low in _MONTHS_AND_DAYS


class PlaceNameRecognizer(_Base):
    """GeoNames city and US state names in a locative position."""

    ENTITY = "LOCATION"

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        places = lexicons.place_names()
        taken = -1
        for start, end, value in _capitalised_runs(text):
            if start < taken or value.lower() not in places or (value.isupper() and len(value) <= 3):
                continue  # three capitals are an abbreviation ("PRN"), not a place
            if " " not in value and "-" not in value and _ordinary(value):
                continue
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end
            before = text[max(line_start, start - 30) : start]
            alone = not text[line_start:start].strip(" \t-*•>}?|:") and not text[end:line_end].strip(" \t,.;:")
            region_after = _REGION_AFTER.match(text, end) is not None
            if not (_LOCATIVE.search(before) or alone or region_after) or is_eponym(text, start, end):
                continue
            taken = end
            yield start, end, 0.6


def _non_ascii_name_word(word: str) -> bool:
    return any(ord(c) > 127 for c in word) and word.lower() not in lexicons.common_words()


_DOSE_AFTER = re.compile(rf"[ \t]+\d+(?:[.,/]\d+)*[ \t]*{_DOSE_UNIT}")
_BETWEEN_NAMES = re.compile(r"[ \t]+(?:[A-Z]\.?[ \t]+)?")
_LABELLED_NAME = re.compile(
    rf"{_CAPWORD}(?:[ \t]+(?:[A-Z]\.?[ \t]+)?{_CAPWORD}){{0,3}}|{_CAPWORD_LONG},[ \t]*{_CAPWORD_LONG}"
)
_LABEL = re.compile(rf"(?m)^[^\w\n]*{_U}[A-Za-z' /]{{1,30}}:[ \t]*")
#: "Given I. Family": two capitalised words with one capital initial between them, as names are signed and typed.
_INITIALLED = re.compile(rf"(?<![\w\-])({_CAPWORD_LONG}) [A-Z]\.? ({_CAPWORD_LONG})(?![\w\-])")
#: A line of a dialogue or chat transcript: one capitalised word, a colon, then words ("Amaru: How are you?").
_SPEAKER_LINE = re.compile(rf"(?m)^[ \t]*({_CAPWORD_LONG})[ \t]*:[ \t]*(?=[\"'\u201c]?{_L}[^\n]*?[ \t,]{_L})")


class DictionaryNameRecognizer(_Base):
    """Person names found with the census name lists, capitalisation, non-English spelling and ``Label:`` fields."""

    ENTITY = "PERSON"

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        given, family = lexicons.given_names(), lexicons.surnames()
        words = [(m.start(), m.end(), m.group()) for m in re.finditer(rf"(?<![\w\-]){_CAPWORD_LONG}(?![\w])", text)]
        i = 0
        while i < len(words):
            s, e, w = words[i]
            low = w.lower()
            j = i
            # Following capitalised words (a middle initial may stand between): the rest of a full name.
            while j + 1 < len(words) and j - i < 2 and _BETWEEN_NAMES.fullmatch(text, words[j][1], words[j + 1][0]):
                nxt = words[j + 1][2]
                if nxt.lower() in STOP_WORDS or (_ordinary(nxt) and nxt.lower() not in family):
                    break
                j += 1
            # Three capitals or fewer are an abbreviation ("ED", "AL"), not a given name.
            is_given = low in given and low not in _MONTHS_AND_DAYS and not (w.isupper() and len(w) <= 3)
            strange = _non_ascii_name_word(w) or any(_non_ascii_name_word(x[2]) for x in words[i + 1 : j + 1])
            end = words[j][1]
            if is_eponym(text, s, end) or _DOSE_AFTER.match(text, end) or (j == i and low in lexicons.drug_names()):
                i = j + 1
                continue
            rest = [x[2] for x in words[i + 1 : j + 1]]
            census_surname_follows = any(x.lower() in family for x in rest)
            surname_follows = census_surname_follows or any(_non_ascii_name_word(x) or _unknown_word(x) for x in rest)
            if low in STOP_WORDS:
                pass
            elif j > i and (strange or (is_given and (not _ordinary(w) or surname_follows))):
                yield s, end, 0.6  # "Teresa Okafor", "Snæfríður Friðbjarnardóttir"
            elif j > i and census_surname_follows and _unknown_word(w):
                yield s, end, 0.6  # "Niamh Gallagher": a name no list holds, then a census surname
            elif is_given and not _ordinary(w):
                yield s, e, 0.5  # a given name alone, not an English word ("Molly")
            elif strange and not _ordinary(w) and w.lower() not in lexicons.country_names():
                yield s, e, 0.5  # one word spelt outside English ("Møller")
            elif low in family and low not in STOP_WORDS:
                m = re.match(rf",[ \t]*({_CAPWORD_LONG})", text[e : e + 40])
                if m and m.group(1).lower() in given and m.group(1).lower() not in lexicons.common_words():
                    yield s, e + m.end(), 0.6  # "Okafor, Teresa", "SMITH, GWENDOLYN"
            i = j + 1
        # "Decedent: Hjalmar Lind": a label, then capitalised words of which one is a dictionary name.
        for m in _LABEL.finditer(text):
            run = _LABELLED_NAME.match(text[m.end() : m.end() + 80])
            if not run:
                continue
            tokens = re.findall(rf"{_CAPWORD_LONG}", run.group())
            rest = text[m.end() + run.end() : m.end() + run.end() + 2]
            if not tokens or any(t.lower() in STOP_WORDS for t in tokens) or (rest and rest[0] not in "\n,;()"
                                                                           and not rest.startswith(" (")):  # fmt: skip
                continue
            named = any((t.lower() in given or t.lower() in family) and not _ordinary(t) for t in tokens)
            if named and not is_eponym(text, m.end(), m.end() + run.end()):
                yield m.end(), m.end() + run.end(), 0.85
        yield from _initialled_names(text, given)
        yield from _speakers(text, given)


#: Inflections web2 does not list (it holds base forms): plural, past, gerund, possessive -> the base form.
_INFLECTIONS = (("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                ("'s", ""), ("\u2019s", ""))


def _english_word(low: str) -> bool:
    """Whether a lower-case word is an English word, inflected or not, or a hyphenated compound of English words."""
    if _ordinary(low):
        return True
    if "-" in low:
        return all(_english_word(part) for part in low.split("-") if part)
    common = lexicons.common_words()
    for end, base in _INFLECTIONS:
        if low.endswith(end) and len(low) > len(end) + 2:
            stem = low[: -len(end)]
            # "submitting", "planned": the final consonant doubled before the ending
            if stem + base in common or (end in ("ing", "ed") and stem[-1] == stem[-2] and stem[:-1] in common):
                return True
    return False


#: Above spaCy's 0.85: Presidio keeps one of two equal spans, the higher score, and spaCy's guess of the same span may
#: then be dropped as clinical vocabulary ("Okonjo:" read as a heading), taking the name with it.
_ABOVE_NER = 0.86


def _unknown_word(word: str) -> bool:
    """A word in title case that is no English word (inflected or not), medicine or country: most likely a name.
    Words in capitals are headings and abbreviations ("ALLERGIES", "WO"), never unknown words."""
    low = word.lower()
    return not (word.isupper() or _english_word(low) or low in lexicons.drug_names() or low in lexicons.country_names())


def _initialled_names(text: str, given: frozenset[str]) -> Iterator[tuple[int, int, float]]:
    """ "Tara M Nuncija", "Czcibor J. Borkowski": a middle initial between two words that are names or no English
    words ("Vitamin D Deficiency", "Factor V Leiden" and "Type A Dissection" start with an English word)."""
    for m in _INITIALLED.finditer(text):
        first, last = m.group(1), m.group(2)
        if first.lower() in STOP_WORDS or last.lower() in STOP_WORDS or is_eponym(text, m.start(), m.end()):
            continue
        if (first.lower() in given and not first.isupper()) or (
            _unknown_word(first) and _unknown_word(last)
        ):
            yield m.start(), m.end(), _ABOVE_NER


def _speakers(text: str, given: frozenset[str]) -> Iterator[tuple[int, int, float]]:
    """Speakers of a dialogue or chat transcript, in a text with two or more lines of words after a one-word label:
    a label that is a given name, or that is no English word and speaks on two lines or more ("Sini: ..."; a
    note's headings are English words or abbreviations written once: "Lungs:", "ALLERGIES:", "Neuro:")."""
    speakers = [(m.start(1), m.end(1), m.group(1)) for m in _SPEAKER_LINE.finditer(text)]
    if len(speakers) < 2:
        return
    turns = Counter(word for _, _, word in speakers)
    for start, end, word in speakers:
        if word.isupper() or _english_word(word.lower()):
            continue
        if (word.lower() in given or (turns[word] >= 2 and _unknown_word(word))) and not is_eponym(text, start, end):
            yield start, end, _ABOVE_NER


#: Column headers of dates: the date words, and the times a medication list records ("Last dose", "Given", "Start").
_DATE_HEADER = re.compile(r"(?i)\b(?:date|day|dos|when|dated|last|given|taken|start(?:ed)?|stop(?:ped)?)\b")
_CELL_MONTH_DAY = re.compile(r"(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])(?:[ \t]+(?:[01]?\d|2[0-3]):?[0-5]\d)?")


class TableDateColumnRecognizer(_Base):
    """Month/day values without a year in a table column whose header names a date ("Date", "Day", "DOS"), in
    tables with ``|`` or tab separated cells: a flowsheet's "6/7" is a date, not a fraction."""

    ENTITY = "DATE"

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        if "|" not in text and "\t" not in text:
            return
        date_columns: set[int] | None = None
        separator = ""
        pos = 0
        for line in text.split("\n"):
            sep = "|" if line.count("|") >= 2 else "\t" if line.count("\t") >= 1 else ""
            if not sep:
                date_columns, pos = None, pos + len(line) + 1
                continue
            cells, start = [], pos
            for cell in line.split(sep):
                cells.append((start, start + len(cell), cell))
                start += len(cell) + 1
            if date_columns is None or sep != separator:
                found = {i for i, (_, _, c) in enumerate(cells) if _DATE_HEADER.search(c)}
                date_columns, separator = (found or None), sep
            else:
                for i in date_columns:
                    if i < len(cells):
                        s, _, cell = cells[i]
                        m = _CELL_MONTH_DAY.fullmatch(cell.strip())
                        if m:
                            offset = s + len(cell) - len(cell.lstrip())
                            date_end = offset + len(m.group().split()[0])
                            yield offset, date_end, 0.7
            pos += len(line) + 1


#: Words of three letters or more in a script other than Latin (Greek, Cyrillic, Armenian, Hebrew, Arabic, Indic,
#: CJK...), with numbers between them: in an English note these are proper names and addresses, while Greek letters
#: used as symbols stand alone or in one- or two-letter words ("beta-blocker" written with the Greek letter, "ug").
_FOREIGN = (
    r"[\u0370-\u03ff\u1f00-\u1fff\u0400-\u052f\u0530-\u058f\u0590-\u06ff\u0900-\u0dff\u3040-\u30ff"
    r"\u4e00-\u9fff\uac00-\ud7af]"
)
_FOREIGN_WORD = rf"{_FOREIGN}(?:{_FOREIGN}|['.\-])*{_FOREIGN}{_FOREIGN}"
_FOREIGN_RUN = re.compile(
    rf"(?:\d{{1,6}}[ \t]+)?{_FOREIGN_WORD}(?:[ \t]+(?:{_FOREIGN_WORD}|{_FOREIGN}\.|\d{{1,6}}\b|\([^()\n]{{1,30}}\)))*"
)


class ForeignScriptRecognizer(_Base):
    """Runs of words written in a non-Latin script (names, places, street addresses)."""

    ENTITY = "LOCATION"

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        if text.isascii():
            return
        for m in _FOREIGN_RUN.finditer(text):
            yield m.start(), m.end(), 0.6


#: Endings of medical words made from Greek and Latin roots ("cholangiogram", "centrilobular", "cryotherapy") and of
#: microbe genera: such a word is vocabulary the 1934 ``web2`` list lacks, not a name.
_MEDICAL_ENDING = re.compile(
    r"(?i:.*(?:itis|osis|oses|ectomy|otomy|ostomy|plasty|scopy|scopic|gram|graphy|logy|logic|logical|logist|pathy"
    r"|a?emia|algia|therapy|cyte|omas?|ular|ation|ative|ists?|ism|genic|ase|ine|ide|ol|ium|ia|ic|al"
    # genera of microbes ("Pseudomonas", "Enterobacter", "Streptococcus", "Candida" is a census name)
    r"|ella|cocc(?:us|i)|bacter|monas|myces|bacill(?:us|i)|plasma|spora|virus))"
)
#: spaCy's labels for a word that is a nationality, a language, a company, a product or a title, not a person.
_NOT_A_PERSON_LABELS = frozenset({"NORP", "LANGUAGE", "ORG", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW"})
_CONTRACTION = re.compile(r"(?i:.*['\u2019](?:s|t|d|m|ll|re|ve))")
_WORD_IN_TEXT = re.compile(rf"(?<![\w\-'\u2019]){_CAPWORD_LONG}(?![\w'\u2019])")
UNKNOWN_WORD_RECOGNIZER = "UnknownWordNameRecognizer"


class UnknownWordNameRecognizer(_Base):
    """A word in title case that no dictionary here knows is a proper name: not an English word (inflected or not),
    medicine, census name (those have their own rules), place, abbreviation (capitals, or capitals inside), a word
    with a Greek or Latin medical ending, a contraction, an eponym or a heading before ``:``, and not inside what
    spaCy calls a nationality, language, organisation or product. Scored as a statistical guess."""

    ENTITY = "PERSON"

    def __init__(self) -> None:
        super().__init__()
        self.name = UNKNOWN_WORD_RECOGNIZER

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if entities and self.ENTITY not in entities:
            return []
        doc = getattr(nlp_artifacts, "tokens", None)
        covered = [(e.start_char, e.end_char) for e in (doc.ents if doc is not None else ())
                   if e.label_ in _NOT_A_PERSON_LABELS]  # fmt: skip
        found = []
        for s, e, score in self.spans(text):
            if not any(a <= s and e <= b for a, b in covered):
                found.append(_result(self.ENTITY, s, e, score, self.name, self.id))
        return found

    def spans(self, text: str) -> Iterator[tuple[int, int, float]]:
        known = (lexicons.given_names(), lexicons.surnames(), lexicons.place_names())
        for m in _WORD_IN_TEXT.finditer(text):
            word, (s, e) = m.group(), m.span()
            low = word.lower()
            if len(word) < 4 or any(c.isupper() for c in word[1:]) or _CONTRACTION.fullmatch(word):
                continue
            if text[e : e + 1] == ":" or any(low in k for k in known) or _MEDICAL_ENDING.fullmatch(word):
                continue
            if not _unknown_word(word) or is_eponym(text, s, e):
                continue
            yield s, e, 0.5


def structure_recognizers() -> list[EntityRecognizer]:
    """The structural and dictionary recognizers (the engine adds them beside ``clinical_recognizers``)."""
    return [AddressBlockRecognizer(), PlaceNameRecognizer(), DictionaryNameRecognizer(), TableDateColumnRecognizer(),
            ForeignScriptRecognizer(), UnknownWordNameRecognizer()]  # fmt: skip
