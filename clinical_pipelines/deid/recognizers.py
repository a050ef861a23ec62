"""Presidio recognizers for clinical identifiers that the default set lacks or scores too low.

Each recognizer is a list of regular expressions. Where only part of a match is the identifier
(``MRN: <id>``, ``93-year-old``) a named group marks the span that is reported, so replacements
keep the surrounding words. A recognizer may carry context words: when one occurs shortly before
a match its score is raised by ``context_boost`` (we do this ourselves and mark the result as
context-enhanced, so Presidio's lemma-based enhancer leaves it alone).

Entity types (Presidio names) produced here: ``PERSON``, ``MRN``, ``ACCESSION_NUMBER``, ``ID``,
``AGE_OVER_89``, ``STREET_ADDRESS``, ``FACILITY``, ``DATE``, ``PHONE_NUMBER``, ``US_SSN``,
``ZIP_CODE``, ``EMAIL_ADDRESS`` and ``URL``.

Date helpers (:func:`parse_date`) return the parsed date together with a renderer that writes
another date in exactly the same format (ISO, US numeric with the same zero padding, month name
full or abbreviated, day-first or month-first, with or without the comma).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from clinical_pipelines.deid.nlp import offline_tld_extractor, unused_backends_hidden

with unused_backends_hidden():  # torch and transformers: a second of imports, never used
    from presidio_analyzer import EntityRecognizer, LocalRecognizer, Pattern, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer, UrlRecognizer

# --------------------------------------------------------------------------------------------
# Generic regex recognizer with group spans and a simple preceding-context boost


@dataclass(frozen=True)
class RegexPattern:
    """One regex; ``group`` names the reported span (``0``: the whole match)."""

    name: str
    regex: re.Pattern[str]
    score: float
    group: str | int = 0
    validate: Callable[[str], bool] | None = None


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


class RegexRecognizer(LocalRecognizer):
    """Report ``entity`` wherever one of ``patterns`` matches; boost the score on nearby context words."""

    def __init__(
        self,
        entity: str,
        patterns: Sequence[RegexPattern],
        *,
        name: str,
        context: Iterable[str] = (),
        context_window: int = 40,
        context_boost: float = 0.35,
        context_after: int = 0,
    ) -> None:
        self.patterns = list(patterns)
        self.context_after = context_after
        words = sorted({w.lower() for w in context}, key=len, reverse=True)
        self._context = _rx(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.I) if words else None
        self.context_window = context_window
        self.context_boost = context_boost
        super().__init__(supported_entities=[entity], name=name, supported_language="en")

    def load(self) -> None:  # nothing to load
        pass

    def _has_context(self, text: str, start: int, end: int | None = None) -> bool:
        if self._context is None:
            return False
        window = text[max(0, start - self.context_window) : start]
        if self.context_after and end is not None:  # a label written after the value ("555 0100 office")
            window += " " + text[end : end + self.context_after]
        return self._context.search(window) is not None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        results: list[RecognizerResult] = []
        for pattern in self.patterns:
            for match in pattern.regex.finditer(text):
                start, end = match.span(pattern.group)
                if start < 0 or start == end:
                    continue
                if pattern.validate is not None and not pattern.validate(text[start:end]):
                    continue
                score = pattern.score
                if self._has_context(text, match.start(), match.end()):
                    score = min(1.0, score + self.context_boost)
                results.append(
                    RecognizerResult(
                        entity_type=entity,
                        start=start,
                        end=end,
                        score=score,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                            RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
                        },
                    )
                )
        return EntityRecognizer.remove_duplicates(results)


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


# --------------------------------------------------------------------------------------------
# Names

# Letters of any Latin script ("Reišl", "Bernharðsson"); an upper-case initial is a letter that is not lower case.
_UPPER = r"[A-ZÀ-ÖØ-Þ\u0100-\u024f]"
_LETTER = r"[^\W\d_]"
_NAME_WORD = rf"{_UPPER}(?:{_LETTER}|['\-])+"
_NAME = rf"(?:{_NAME_WORD}|{_UPPER}\.)(?:[ \t]+[A-Z](?:\.|\b))?(?:[ \t]+{_NAME_WORD}){{0,2}}\b"
# "DR", "PROF" in capitals too (ALL CAPS notes); not "MS"/"MR", which are also diagnoses and modalities.
_TITLES = r"(?:(?i:Dr|Doctor|Prof)|Mr|Mrs|Ms|Miss|Mx|Rev)"
_TITLE_PREFIX = rf"(?:{_TITLES}\.?[ \t]+)?"
_NAME_FIELDS = (
    r"(?i:patient(?:[ \t]+name)?|name|pt|attending|referring(?:[ \t]+physician)?|ordering(?:[ \t]+physician)?"
    r"|physician|provider|next[ \t]+of[ \t]+kin|emergency[ \t]+contact|family[ \t]+contact|guardian|spouse"
    r"|(?:[a-z]+[ \t]+)?(?:surgeon|assistant|anesthesiologist|anaesthetist|nurse|rn|lpn|np|pa|resident|fellow|intern"
    r"|pathologist|radiologist|cardiologist|neurologist|oncologist|therapist|pharmacist|clinician|consultant|pcp|gp"
    r"|midwife|caregiver|interpreter|witness|chaplain|social[ \t]+worker|case[ \t]+manager|copy[ \t]+to|cc)"
    r"|(?:[a-z]+[ \t]+)?(?:signed|dictated|reviewed|seen|transcribed|verified|approved|read|performed|reported"
    r"|entered|completed|written|authored|prepared)[ \t]+by)"
)
#: Kinship and other relations whose name follows ("daughter Maria", "wife, Anna"): a closed class of English.
_RELATION = (
    r"(?i:wife|husband|spouse|partner|fianc[eé]e?|son|daughter|mother|father|mom|mum|dad|brother|sister|sibling"
    r"|aunt|uncle|niece|nephew|cousin|grand(?:son|daughter|mother|father|child)|step(?:son|daughter|mother|father)"
    r"|in-law|friend|neighbou?r|roommate|guardian|caregiver|pastor|priest|rabbi|imam"
    # people around a patient named by their role ("carer, Summer", "classmate Rory", "charge nurse Joy")
    r"|boyfriend|girlfriend|fianc[eé]|housemate|flatmate|classmate|schoolmate|colleague|co-?worker|boss|landlord"
    r"|landlady|teacher|coach|carer|aide|nurse|physio|interpreter|chaplain|pharmacist|sponsor)"
)
# A name after a relation: one word, a second only when written in title case (not a run of ALL CAPS words).
_RELATIVE_NAME = rf"(?P<name>{_NAME_WORD}(?:[ \t]+{_UPPER}(?![A-Z])(?:{_LETTER}|['\-])+)?)\b"


def person_recognizer() -> RegexRecognizer:
    """Names after a title ("Dr. Given Family", "Ms. Family"), in ``Name:`` fields, and DICOM ``Family^Given``."""
    return RegexRecognizer(
        "PERSON",
        [
            RegexPattern("titled name", _rx(rf"\b{_TITLES}\.?[ \t]+(?P<name>{_NAME})"), 0.9, "name"),
            RegexPattern(
                "name field", _rx(rf"\b{_NAME_FIELDS}[ \t]*:[ \t]*{_TITLE_PREFIX}(?P<name>{_NAME})"), 0.9, "name"
            ),
            RegexPattern("dicom name", _rx(r"\b[A-Za-z'\-]+\^[A-Za-z'\-]+(?:\^[A-Za-z'.\-]*){0,3}"), 0.9),
            RegexPattern(
                "family, given in a name field",
                _rx(rf"\b{_NAME_FIELDS}[ \t]*:[ \t]*(?P<name>{_NAME_WORD},[ \t]*{_NAME_WORD}(?:[ \t]+[A-Z]\b\.?)?)"),
                0.95,
                "name",
            ),
            # Typed in lower case ("ms. Florence", "dr lee"): the name then carries the capital.
            RegexPattern(
                "lower-case title",
                _rx(rf"(?<![\w.])(?:dr|mr|mrs|ms|miss|prof)\.?[ \t]+(?P<name>{_NAME})"),
                0.85,
                "name",
                _a_name_or_no_common_word,  # "QRS 120 ms Normal axis": a unit before an English word
            ),
            # "Dear Grace", "Hi Pirjo,", "my name is Dalal", "call me Virpi": a closed class of English phrases that
            # introduce or address a person by name.
            RegexPattern(
                "addressed or introduced name",
                _rx(rf"(?:(?<![\w])(?:Dear|Hi|Hello|Hey)|(?i:\b(?:my[ \t]+name[ \t]+is|name's|call[ \t]+me|named"
                    rf"|known[ \t]+as|goes[ \t]+by)))[ \t]+(?P<name>{_NAME})"),
                0.85,
                "name",
                _a_name_or_no_common_word,
            ),
            RegexPattern(
                "relative's name",
                _rx(rf"\b{_RELATION}(?:'s)?[ \t]*[(,:]?[ \t]*{_TITLE_PREFIX}{_RELATIVE_NAME}"),
                0.9,  # above spaCy's 0.85: Presidio drops a PERSON inside another PERSON of equal score
                "name",
                _a_given_name_or_no_function_word,
            ),
        ],
        name="ClinicalNameRecognizer",
    )


def _a_name_or_no_common_word(value: str) -> bool:
    """False when the first word is an English word and no given name ("Dear Colleague", "Hi team"; "Dear Grace" is
    kept: a census given name)."""
    from clinical_pipelines.deid import lexicons

    first = value.split()[0].strip(".").lower()
    if first in lexicons.given_names():
        return True
    return _not_a_common_word(value) and first not in lexicons.common_words()


def _a_given_name_or_no_function_word(value: str) -> bool:
    """After a relation: a census given name even when it is a function word ("son Will"), else no function word
    ("daughter At bedside")."""
    from clinical_pipelines.deid import lexicons

    return value.split()[0].lower() in lexicons.given_names() or _not_a_common_word(value)


def _not_a_common_word(value: str) -> bool:
    """False for a lower-case English function word written with a capital ("daughter At bedside")."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return value.split()[0].lower() not in STOP_WORDS


# --------------------------------------------------------------------------------------------
# Record numbers and other identifiers

_ID = r"(?P<id>[A-Za-z0-9][A-Za-z0-9\-]{3,24})\b"


def mrn_recognizer() -> RegexRecognizer:
    """Medical record numbers: ``MRN1234567`` anywhere; any id after "MRN", "MR#", "medical record number"."""
    return RegexRecognizer(
        "MRN",
        [
            # 1.0: an MRN selects the patient's pseudonym and date shift, so it must win over any other reading
            # of the same characters (Presidio's medical-licence pattern also matches "RN1206386").
            RegexPattern("MRN prefixed", _rx(r"\bMRN\d{5,12}\b"), 1.0),
            RegexPattern(
                "MRN field",
                _rx(
                    r"(?i:\b(?:MRN|MR[ \t]*#|MR[ \t]*(?:no\.?|number)"
                    r"|medical[ \t]+record(?:[ \t]+(?:number|no\.?|#))?))"
                    rf"[ \t]*[:#]?[ \t]*(?:is[ \t]+)?{_ID}"
                ),
                1.0,
                "id",
                _has_digit,
            ),
        ],
        name="MrnRecognizer",
    )


def accession_recognizer() -> RegexRecognizer:
    """Accession numbers after the word "accession" (with optional number/no/#)."""
    return RegexRecognizer(
        "ACCESSION_NUMBER",
        [
            RegexPattern(
                "accession field",
                _rx(rf"(?i:\baccession(?:[ \t]+(?:number|no\.?|#))?)[ \t]*[:#]?[ \t]*{_ID}"),
                0.9,
                "id",
                _has_digit,
            )
        ],
        name="AccessionRecognizer",
    )


def other_id_recognizer() -> RegexRecognizer:
    """Other labelled identifiers: patient/study/encounter/visit/account/order/member/policy numbers."""
    label = (
        r"(?i:\b(?:patient[ \t]+id|study[ \t]+id|encounter(?:[ \t]+(?:number|no\.?|id|#))?"
        r"|visit[ \t]+(?:number|no\.?|id)"
        r"|account[ \t]+(?:number|no\.?|#)|acct[ \t]*#|order[ \t]+(?:number|no\.?|id|#)|member[ \t]+id"
        r"|policy[ \t]+(?:number|no\.?|#)|health[ \t]+plan[ \t]+(?:id|number)|device[ \t]+serial(?:[ \t]+number)?"
        r"|serial[ \t]+(?:number|no\.?|#)|license[ \t]+(?:number|no\.?|#)|NPI))"
    )
    # Any label that ends in an identifier noun ("Claim no.", "Authorization #", "Medicare number", "Badge ID"):
    # the value after it, when it holds four digits or more (room and bed numbers have fewer).
    generic = (
        r"(?i:\b[a-z][a-z\-]*(?:[ \t]+[a-z][a-z\-]*){0,2}[ \t]+(?:id|no\.?|number|num\.?|\#|ref(?:erence)?)"
        r"|\b(?:claim|authori[sz]ation|auth|confirmation|ticket|case|reference|ref|tracking|certificate|badge"
        r"|employee|subscriber|member|group|policy|insurance|medicare|medicaid|beneficiary|passport|licen[cs]e)"
        r"[ \t]*(?:\#|no\.?|number|id)?)"
    )
    return RegexRecognizer(
        "ID",
        [
            RegexPattern("labelled id", _rx(rf"{label}[ \t]*[:#]?[ \t]*{_ID}"), 0.85, "id", _has_digit),
            # Serial numbers: "S/N 77A-20934", "SN 7731-BX-99120"
            RegexPattern(
                "serial",
                _rx(r"\b(?:S/N|SN|s/n)[ \t]*[:#]?[ \t]*(?P<id>[A-Za-z0-9][A-Za-z0-9\-]{3,24})\b"),
                0.8,
                "id",
                _has_digit,
            ),
            # Vehicle identifiers (Safe Harbor's twelfth kind): a licence plate or VIN after its label.
            RegexPattern(
                "vehicle id",
                _rx(r"(?i:\b(?:plate|licen[cs]e[ \t]+plate|tag|vin|vehicle[ \t]+id(?:entification)?(?:[ \t]+number)?)"
                    r"[ \t]*(?:no\.?|number|\#|:)?[ \t]*)"
                    r"(?P<id>(?=[A-Z0-9 \-]*\d)[A-Z0-9]{1,8}(?:[ \-][A-Z0-9]{1,8})?)\b"),
                0.7,
                "id",
                lambda v: sum(c.isdigit() for c in v) >= 2 and len(v.replace(" ", "").replace("-", "")) >= 4,
            ),
            RegexPattern(
                "id after an id noun",
                _rx(rf"{generic}[ \t]*[:#]?[ \t]*(?P<id>[A-Za-z]{{0,4}}[ ]?\d[\d\- ]{{2,18}}\d[A-Za-z]?)\b(?![.,/]\d)"),
                0.6,
                "id",
                lambda v: sum(c.isdigit() for c in v) >= 4,
            ),
        ],
        name="LabelledIdRecognizer",
    )


def _enough_digits(value: str) -> bool:
    return sum(c.isdigit() for c in value) >= 5


def code_id_recognizer() -> RegexRecognizer:
    """Record-like codes: letters and digits mixed ("E240591127", "CDC-330918"), or digit groups joined by two
    or more dashes ("448-201-93"), with at least five digits. Codes with a dot (ICD-10 "C50.911") are not matched,
    nor plain ranges ("135-145"); a nearby id word raises the score."""
    return RegexRecognizer(
        "ID",
        [
            RegexPattern(
                "letters and digits",
                _rx(r"(?<![\w.\-/])(?=[A-Za-z\-]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![\w\-/]|\.\w)"),
                0.5,
                0,
                _enough_digits,
            ),
            RegexPattern(
                "dashed digit groups",
                _rx(r"(?<![\w.\-/])\d{2,}(?:-\d{2,}){2,}(?![\w\-/]|\.\d)"),
                0.5,
                0,
                _enough_digits,
            ),
        ],
        name="CodeIdRecognizer",
        context=["id", "no", "number", "#", "ref", "reference", "case", "record", "chart", "account", "specimen"],
        context_boost=0.3,
    )


def long_number_recognizer() -> RegexRecognizer:
    """Runs of 8 or more digits (optionally in groups of 3-4, as card and account numbers are written):
    clinical measurements never have that many significant digits, identifiers do."""
    return RegexRecognizer(
        "ID",
        [
            RegexPattern("digit run", _rx(r"(?<![\w.,\-/])\d{8,19}(?![\w\-/]|[.,]\d)"), 0.6),
            RegexPattern(
                "grouped digits", _rx(r"(?<![\w.,\-])\d{4}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,4})?(?![\w\-])"), 0.6
            ),
        ],
        name="LongNumberRecognizer",
    )


def ssn_recognizer() -> RegexRecognizer:
    """US social security numbers, ``123-45-6789`` (no area-number validation) or 9 digits after "SSN"."""
    return RegexRecognizer(
        "US_SSN",
        [
            RegexPattern("ssn dashed", _rx(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), 0.6),
            RegexPattern("ssn spaced", _rx(r"(?<!\d)\d{3} \d{2} \d{4}(?!\d)"), 0.3),
            RegexPattern("ssn bare", _rx(r"(?<!\d)\d{9}(?!\d)"), 0.2),
        ],
        name="ClinicalSsnRecognizer",
        context=["ssn", "social security", "social", "ss#", "ss #"],
        context_boost=0.4,
    )


# --------------------------------------------------------------------------------------------
# Contact details

_PHONE = (
    r"(?<![\d\-])(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ \t]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}"
    r"(?:[ \t]*(?:x|ext\.?)[ \t]*\d{1,5})?(?!\d|-\d)"
)


_INTL = r"\+\d{1,3}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]?\d{1,5}){2,5}"
_GROUPED = r"(?:\(\d{1,4}\)[ .\-]?)?\d{2,6}(?:[ .\-]\d{2,6}){1,4}"


def _phone_digits(value: str) -> bool:
    return 7 <= sum(c.isdigit() for c in value) <= 15


def phone_recognizer() -> RegexRecognizer:
    """US phone and fax numbers; a context word (phone, fax, call, reached...) raises the score."""
    return RegexRecognizer(
        "PHONE_NUMBER",
        [
            RegexPattern("phone", _rx(_PHONE), 0.55),
            RegexPattern("phone bare 10 digits", _rx(r"(?<!\d)\d{10}(?!\d)"), 0.2),
            # A local number without its area code ("555-0186")
            RegexPattern("phone local", _rx(r"(?<![\w\-/.])[2-9]\d{2}-\d{4}(?![\w\-/]|\.\d)"), 0.5),
            # International forms: "+41 53 147 37 99", "+44 (0)20 7946 0958"
            RegexPattern("phone international", _rx(rf"(?<![\w+]){_INTL}(?!\d|-\d)"), 0.6, 0, _phone_digits),
            # Other groupings ("730 064 218", "0380 7558505", "(72) 583-350"): a phone only with a context word
            RegexPattern(
                "phone grouped", _rx(rf"(?<![\w+.,/\-]){_GROUPED}(?!\w|-\d|[.,/]\d)"), 0.2, 0, _phone_digits
            ),
            # In-house numbers: "pager 5532", "ext. 4471", "beeper #212" (a hospital's own short numbers)
            RegexPattern(
                "pager or extension",
                _rx(r"(?i:\b(?:pager|beeper|pgr|bleep|ext\.?|extension)[ \t]*(?:no\.?|number|\#|:)?[ \t]*)"
                    r"(?P<n>\d{3,6})(?!\d|[.,/\-]\d)"),
                0.8,
                "n",
            ),
        ],
        name="ClinicalPhoneRecognizer",
        context=[
            "phone",
            "telephone",
            "tel",
            "fax",
            "call",
            "cell",
            "mobile",
            "pager",
            "page",
            "contact",
            "reached",
            "reach",
            "number",
            "ph",
            "home",
            "work",
            "desk",
            "office",
            "messages",
            "text",
            "sms",
            "answer",
            "answering",
            "dial",
            "ring",
            "landline",
            "voicemail",
        ],
        context_boost=0.4,
        context_after=12,
    )


_DIGIT_RUN = re.compile(r"[+(]?\d[\d \t().\-/]*\d\)?")


class WindowedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (python-phonenumbers, every default region), run only on the stretches of text
    that hold six or more digits: the same numbers, without the matcher walking the whole note once per region."""

    MIN_DIGITS = 6
    #: Text kept on each side of a run of digits: the matcher reads an extension (", ext. 1234567") as part of the
    #: number and judges a candidate by the characters around it, so a narrower window can cut one or change it.
    MARGIN = 24

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Phone numbers in ``text``, as :class:`PhoneRecognizer` finds them, offsets in ``text``."""
        windows: list[list[int]] = []
        for m in _DIGIT_RUN.finditer(text):
            if sum(c.isdigit() for c in m.group()) < self.MIN_DIGITS:
                continue
            start, end = max(0, m.start() - self.MARGIN), min(len(text), m.end() + self.MARGIN)
            if windows and start <= windows[-1][1]:
                windows[-1][1] = end
            else:
                windows.append([start, end])
        results: list[RecognizerResult] = []
        for start, end in windows:
            for r in super().analyze(text[start:end], entities, None):
                r.start += start
                r.end += start
                results.append(r)
        return EntityRecognizer.remove_duplicates(results)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer validating domains with the bundled public suffix list (no network)."""

    PATTERNS: ClassVar[list[Pattern]] = [Pattern(p.name, p.regex, 0.75) for p in EmailRecognizer.PATTERNS]

    def validate_result(self, pattern_text: str) -> bool:
        """Whether the e-mail's domain has a known public suffix."""
        return offline_tld_extractor()(pattern_text).fqdn != ""


def email_recognizer() -> OfflineEmailRecognizer:
    return OfflineEmailRecognizer(context=["email", "e-mail", "mail"])


class WindowedUrlRecognizer(UrlRecognizer):
    """Presidio's URL recognizer, its patterns run only on the runs of non-blank characters that hold a dot
    followed by a letter.

    Every one of its patterns needs a dot before the letters of the top-level domain and never matches white
    space, and none looks behind or at word boundaries, so each match lies inside one such run and is found
    there exactly as in the whole note; the long domain alternation is no longer tried at every position."""

    def __init__(self) -> None:
        super().__init__(name="UrlRecognizer")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        """URLs in ``text``, as :class:`UrlRecognizer` finds them, offsets in ``text``."""
        results: list[RecognizerResult] = []
        for run in _DOTTED_RUN.finditer(text):
            for r in super().analyze(run.group(), entities, None, regex_flags):
                r.start += run.start()
                r.end += run.start()
                results.append(r)
        return results


_DOTTED_RUN = re.compile(r"(?<!\S)\S*\.[A-Za-z]\S*")  # a whole run of non-blanks with a dot before a letter


def url_recognizer() -> UrlRecognizer:
    """Presidio's URL recognizer (the engine puts it in the place of the predefined one)."""
    return WindowedUrlRecognizer()


# --------------------------------------------------------------------------------------------
# Geography and facilities

_STATES_TEXT = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
    "OH OK OR PA PR RI SC SD TN TX UT VT VA WA WV WI WY GU VI AS MP"
)
US_STATES = tuple(_STATES_TEXT.split())
_STATE = r"(?:" + "|".join(US_STATES) + r")"
_ZIP = r"\d{5}(?:-\d{4})?"
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|Circle|Cir"
    r"|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Square|Sq|Plaza|Plz|Loop|Alley|Row|Crescent|Path|Pike|Run|Walk|Bend"
    r"|Crossing|Point|Pointe|Ridge|Hill|Hills|Heights|Park|Grove|Commons|Close|Expressway|Expy|Freeway|Fwy|Route|Rte)"
)
_CITY = r"[A-Z][a-zA-Z.'\-]*(?:[ \t]+[A-Z][a-zA-Z.'\-]*){0,3}"
_STREET = (
    rf"\b\d{{1,6}}[A-Z]?[ \t]+(?:(?:[NSEW]|North|South|East|West|NE|NW|SE|SW)\.?[ \t]+)?"
    rf"(?:(?:[A-Z][a-zA-Z'\-]*|\d+(?:st|nd|rd|th))[ \t]+){{1,4}}(?i:{_STREET_SUFFIX})\b\.?"
    rf"(?:[ \t]+(?:[NSEW]|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?[ \t]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Bldg\.?|Building|Floor|Fl\.?|Room|Rm\.?|\#)"
    r"[ \t]*[A-Za-z0-9\-]+)?"
    rf"(?:,[ \t]*{_CITY}(?:,?[ \t]+{_STATE}(?:[ \t]+{_ZIP})?|,?[ \t]+{_ZIP})\b)?"
)


def address_recognizer() -> RegexRecognizer:
    """US street addresses (number, street name, suffix, optional unit, city, state and ZIP); "City, ST 12345"."""
    return RegexRecognizer(
        "STREET_ADDRESS",
        [
            RegexPattern("street address", _rx(_STREET), 0.85),
            RegexPattern("city state zip", _rx(rf"\b{_CITY},[ \t]*{_STATE}[ \t]+{_ZIP}\b"), 0.85),
            RegexPattern("po box", _rx(r"\b(?i:P\.?[ \t]?O\.?[ \t]+Box)[ \t]+\d+\b"), 0.85),
            # A street named without its number ("on Meridian Street", "Marsh Road"): the street-type word written
            # out (not "St", "Dr": also Saint and Doctor)
            RegexPattern(
                "street name",
                _rx(r"(?<![\w\-])(?!(?:The|A|An|This|That|Our|Your|His|Her|Their|Same|Next|Main)\b)"
                    r"(?:[A-Z][a-z'\-]+[ \t]+){1,3}(?:Street|Avenue|Road|Boulevard|Parkway|Highway|Lane|Drive)\b"),
                0.6,
            ),
        ],
        name="StreetAddressRecognizer",
    )


_UK_POST = r"[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?[ \t]\d[ABD-HJLNP-UW-Z]{2}"
_CA_POST = r"[A-CEGHJ-NPR-TVXY]\d[A-CEGHJ-NPR-TV-Z][ \t]?\d[A-CEGHJ-NPR-TV-Z]\d"


def zip_recognizer() -> RegexRecognizer:
    """ZIP codes: after a state code ("CO 80234") or with a context word (zip, postal)."""
    return RegexRecognizer(
        "ZIP_CODE",
        [
            RegexPattern("state zip", _rx(rf"\b{_STATE}[ \t]+(?P<zip>{_ZIP})\b"), 0.8, "zip"),
            RegexPattern("zip", _rx(rf"(?<![\d\-/.]){_ZIP}(?![\d\-/.])"), 0.1),
            # Four-digit postcodes (Australia, Denmark, Norway, Switzerland...): only with a postal context word
            RegexPattern("postcode 4", _rx(r"(?<![\d\-/.,])\d{4}(?![\d\-/.,])"), 0.05),
            # Canadian ("K1A 0B1") and British ("SW1A 1AA") postcodes have shapes of their own
            RegexPattern("canadian postcode", _rx(rf"\b{_CA_POST}\b"), 0.5),
            RegexPattern("british postcode", _rx(rf"\b{_UK_POST}\b"), 0.45),
            # Irish Eircodes ("A65 F4E2"): a routing key, then four letters and digits, both present
            RegexPattern(
                "eircode",
                _rx(r"\b[AC-FHKNPRTV-Y]\d{2}[ ](?=[A-Z\d]{0,3}[A-Z])(?=[A-Z\d]{0,3}\d)[AC-FHKNPRTV-Y\d]{4}\b"),
                0.45,
            ),
        ],
        name="ZipCodeRecognizer",
        context=["zip", "zipcode", "zip code", "postal", "postcode"],
        context_window=25,
        context_boost=0.6,
    )


#: Heads of named facilities and other places a patient is tied to (care sites, schools, custody).
FACILITY_HEADS = (
    "Hospital", "Medical Center", "Medical Centre", "Health Center", "Health Centre", "Health System",
    "Health Services", "Health Network", "Healthcare", "Health Care", "Clinic", "Clinics", "Infirmary", "Hospice",
    "Nursing Home", "Rehabilitation Center", "Rehabilitation Hospital", "Surgery Center",
    "Surgical Center", "Care Center", "Cancer Center", "Children's", "Sanatorium", "Health", "Home Care",
    "Assisted Living", "Retirement Home", "Retirement Community", "Care Home", "Group Home",
    "Family Practice", "Medical Group", "Pharmacy", "Laboratory", "Laboratories",
    "Rehab", "Rehabilitation", "Nursing Center", "Nursing Facility", "Care Facility", "Living Center", "Manor",
    "Urgent Care", "Dialysis Center", "Medical Office", "Medical Offices", "Treatment Center", "Senior Living",
    "School", "Academy", "College", "University",
    "Church", "Chapel", "Cathedral", "Mosque", "Temple", "Synagogue", "Gurdwara",
    "Correctional Facility", "Prison", "Jail", "Shelter",
)  # fmt: skip


def _heads(words: Iterable[str]) -> str:
    return "|".join(re.escape(w).replace(r"\ ", r"[ \t]+") for w in sorted(words, key=len, reverse=True))


# Title case ("Mercy General Hospital") or capitals ("MERCY GENERAL HOSPITAL"), not lower case ("GI clinic").
_FACILITY_KIND = r"(?:" + _heads(FACILITY_HEADS) + "|" + _heads(h.upper() for h in FACILITY_HEADS) + r")"
_FAC_WORD = r"(?:[A-Z][a-zA-Z.'&\-]*|of|the|and|for|at|&)"


def care_location_recognizer() -> RegexRecognizer:
    """Where in a hospital a patient lies: "Ward 6 East", "Bed 14", "Room 412", "Bay 3", "Clinic 4" (a location in the
    i2b2 sense: with the date it places the patient), written with a capital or in capitals."""
    place = r"(?:Ward|Bed|Room|Rm|Bay|Cubicle|Clinic|WARD|BED|ROOM|BAY|CLINIC)"
    side = r"(?:[ \t\-]+(?:North|South|East|West|NORTH|SOUTH|EAST|WEST|[NSEW])\b)?"
    return RegexRecognizer(
        "LOCATION",
        [RegexPattern("ward bed room", _rx(rf"\b{place}\.?[ \t]*\#?[ \t]*\d{{1,4}}[A-Za-z]?\b{side}"), 0.6)],
        name="CareLocationRecognizer",
    )


def facility_recognizer() -> RegexRecognizer:
    """Facility names: capitalised words ending in Hospital, Medical Center, Clinic, Health..."""
    return RegexRecognizer(
        "FACILITY",
        [
            RegexPattern(
                "facility",
                _rx(
                    rf"\b[A-Z][a-zA-Z.'&\-]*(?:[ \t]+{_FAC_WORD}){{0,5}}?[ \t]+{_FACILITY_KIND}\b"
                    rf"(?:[ \t]+(?:of|at)[ \t]+[A-Z][a-zA-Z'\-]+(?:[ \t]+[A-Z][a-zA-Z'\-]+){{0,2}})?"
                ),
                0.85,
            ),
        ],
        name="FacilityRecognizer",
    )


# --------------------------------------------------------------------------------------------
# Ages over 89 (HIPAA Safe Harbor): only the number is reported, so "93-year-old" -> "90+-year-old"

_OLD = r"(?P<n>9\d|1[0-2]\d)"
_UNITS_WORDS = r"one|two|three|four|five|six|seven|eight|nine"
_TEENS_WORDS = r"ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty"
#: 90..129 in words: "ninety", "ninety-three", "one hundred", "a hundred and two", "one hundred twenty-one".
_OLD_WORDS = (
    rf"(?P<n>(?i:ninety(?:[ \t\-]+(?:{_UNITS_WORDS}))?"
    rf"|(?:one|a)[ \t\-]+hundred(?:[ \t\-]+(?:and[ \t\-]+)?(?:(?:twenty[ \t\-]+)?(?:{_UNITS_WORDS})|{_TEENS_WORDS}))?))"
)


#: Words after a number that make it a measurement or a duration, not an age.
_NOT_AN_AGE = (
    r"(?i:%|percent|per[ \t]*cent|mg|mcg|g\b|kg|lbs?|pounds|ml|cc|mmhg|mm|cm|bpm|beats|breaths|degrees|°|units?"
    r"|minutes?|mins?|seconds?|secs?|hours?|hrs?|days?|weeks?|months?|times|tablets?|pills?|meters|metres|feet|ft|steps|points?)"
)


def age_recognizer() -> RegexRecognizer:
    """Ages 90..129: "93-year-old", "93 years old", "93 y/o", "93yo", "age 93", "aged 95", "age: 93"."""
    return RegexRecognizer(
        "AGE_OVER_89",
        [
            RegexPattern(
                "n-year-old",
                _rx(rf"(?<![\d.]){_OLD}[ \t]*-?[ \t]*(?i:years?|yrs?|y)[ \t]*-?[ \t]*(?i:old|o\b)"),
                0.9,
                "n",
            ),
            RegexPattern("n y/o", _rx(rf"(?<![\d.]){_OLD}[ \t]*(?i:y/o|y\.o\.?|yo\b|yof\b|yom\b)"), 0.9, "n"),
            # "93 years of age", "93-yr", and the triage shorthand "93M", "93 y F"
            RegexPattern(
                "n years of age",
                _rx(rf"(?<![\d.]){_OLD}[ \t]*-?[ \t]*(?i:years?|yrs?)[ \t]+(?i:of[ \t]+age)"),
                0.9,
                "n",
            ),
            RegexPattern("n sex", _rx(rf"(?<![\w.]){_OLD}[ \t]?(?:y[ \t]?)?[MF]\b(?![\w.]|[ \t]*\d)"), 0.6, "n"),
            RegexPattern(
                "age n", _rx(rf"(?i:\bage[ds]?)[ \t]*(?:of[ \t]+|:[ \t]*|is[ \t]+)?{_OLD}(?![\d.])"), 0.9, "n"
            ),
            # In words: "ninety-two-year-old", "aged one hundred and one"
            RegexPattern(
                "words-year-old",
                _rx(rf"\b{_OLD_WORDS}[ \t]*-?[ \t]*(?i:years?|yrs?)[ \t]*-?[ \t]*(?i:old)\b"),
                0.9,
                "n",
            ),
            RegexPattern(
                "age words", _rx(rf"(?i:\bage[ds]?)[ \t]*(?:of[ \t]+|:[ \t]*|is[ \t]+)?{_OLD_WORDS}\b"), 0.9, "n"
            ),
            # 90..129 written in words, anywhere: measurements are written in digits ("who is ninety-two")
            RegexPattern("number words", _rx(rf"\b{_OLD_WORDS}\b(?![ \t\-]*{_NOT_AN_AGE})"), 0.7, "n"),
            # "she is 93", "who was 99", "I am 101", "turns 95", "died at 96", "reach 100": said of a person
            RegexPattern(
                "person is n",
                _rx(rf"(?i:\b(?:she|he|who|i|they|you|mother|father|mum|mom|dad|wife|husband|sister|brother"
                    rf"|herself|himself)(?:['\u2019]s)?[ \t]+(?:is|was|am|are|turns?|turned|will[ \t]+be"
                    rf"|would[ \t]+have[ \t]+been)|\b(?:died|passed[ \t]+away|still[ \t]+living|lived|living)[ \t]+"
                    rf"(?:at|aged)|\b(?:reach(?:ed)?|turns?|turned))[ \t]+{_OLD}(?![\d.,%/]|[ \t\-]*{_NOT_AN_AGE})"),
                0.6,
                "n",
            ),
            # "Georges Nassar, 94 years": not a duration ("90 years ago", "for 95 years of marriage")
            RegexPattern(
                "n years",
                _rx(rf"(?<!for[ \t])(?<![\d.\-]){_OLD}[ \t]+(?i:years|yrs)\b"
                    r"(?![ \t]+(?i:ago|later|earlier|before|after|since|of[ \t]+(?!age)))"),
                0.6,
                "n",
            ),
            RegexPattern("nth birthday", _rx(rf"(?<![\d.]){_OLD}(?i:st|nd|rd|th)[ \t]+(?i:birthday)"), 0.85, "n"),
        ],
        name="AgeOver89Recognizer",
    )


# --------------------------------------------------------------------------------------------
# Dates

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
_MONTH_RX = (
    r"(?P<month>(?i:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?))(?P<dot>\.?)"
)
_ORD = r"(?P<ord>st|nd|rd|th)?"
DATE_PATTERNS: dict[str, re.Pattern[str]] = {
    "iso": _rx(r"(?<![\d/\-.])(?P<y>\d{4})(?P<sep>[\-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?![\d/\-]|\.\d)"),
    "mdy": _rx(r"(?<![\d/\-.])(?P<m>\d{1,2})(?P<sep>[/\-.])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?![\d/\-]|\.\d)"),
    "month_day_year": _rx(rf"\b{_MONTH_RX}[ \t]+(?P<d>\d{{1,2}}){_ORD}(?P<comma>,?)[ \t]+(?P<y>\d{{4}})\b"),
    "day_month_year": _rx(
        rf"\b(?P<d>\d{{1,2}}){_ORD}(?P<of>[ \t]+of)?[ \t]+{_MONTH_RX}(?P<comma>,?)[ \t]+(?P<y>\d{{4}})\b"
    ),
    # 30-MAR-2022, 05/Jan/24
    "d_mon_y": _rx(
        rf"(?<![\w\-/])(?P<d>\d{{1,2}})(?P<sep>[\-/])(?=[A-Za-z]){_MONTH_RX}(?P=sep)(?P<y>\d{{4}}|\d{{2}})\b"
    ),
    # Without a year (the month written with a capital, so "may 2" is not a date): Apr 13th, 20 September
    "month_day": _rx(rf"\b(?=[A-Z]){_MONTH_RX}[ \t]+(?P<d>\d{{1,2}}){_ORD}\b(?![.,:/]?\d)"),
    "day_month": _rx(rf"\b(?P<d>\d{{1,2}}){_ORD}(?P<of>[ \t]+of)?[ \t]+(?=[A-Z]){_MONTH_RX}\b"),
    # A month and a year, no day (a date element all the same): 06/2068, 3-2024, Nov 2067, March, 2024
    "month_year": _rx(r"(?<![\d/\-.])(?P<m>1[0-2]|0?[1-9])(?P<sep>[/\-])(?P<y>(?:19|20)\d{2})(?![\d/\-]|\.\d)"),
    "mon_year": _rx(rf"\b(?=[A-Z]){_MONTH_RX}(?P<comma>,?)[ \t]+(?P<y>(?:19|20)\d{{2}})\b(?![.,:/\-]?\d)"),
}
#: The day given to a date written without one (month and year): mid-month, so a shift of a few days keeps the month.
_NO_DAY = 15
#: Month/day without a year ("11/19", "6/7"): parsed and shifted like other dates, but only recognised in a date
#: position (a date word just before it, or a time of day just after), never after a dose or a score.
YEARLESS_PATTERNS: dict[str, re.Pattern[str]] = {
    "md": _rx(r"(?<![\d/\-.:])(?P<m>1[0-2]|0?[1-9])(?P<sep>/)(?P<d>3[01]|[12]\d|0?[1-9])(?![\d/]|[.,:]\d)"),
    # Day first where the day cannot be a month ("14/11", "28/2": British and European usage)
    "dm": _rx(r"(?<![\d/\-.:])(?P<d>3[01]|2\d|1[3-9])(?P<sep>/)(?P<m>1[0-2]|0?[1-9])(?![\d/]|[.,:]\d)"),
    # Month and two-digit year where the year cannot be a day ("3/69", "11/58"): as ambiguous as a month/day
    "my": _rx(r"(?<![\d/\-.:])(?P<m>1[0-2]|0?[1-9])(?P<sep>/)(?P<y>3[2-9]|[4-9]\d)(?![\d/]|[.,:]\d)"),
}
_MD_PLAIN = r"(?:1[0-2]|0?[1-9])/(?:3[01]|[12]\d|0?[1-9])(?![\d/]|[.,:]\d)"
_RANGE_TO = r"[ \t]*(?:-|\u2013|to|through|thru)[ \t]*"
_NOT_A_DATE_AFTER = (
    r"(?![ \t]*(?i:tabs?\b|tablets?|caps?\b|capsules?|pills?|mg|mcg|ml|g\b|units?|strength|murmur|vision|ns\b|dose"
    r"|of\b|x\b|%|mm|cm|times|scale|score|power|motor|reflex))"
)
_DATE_WORDS = [
    "on", "since", "from", "until", "till", "through", "thru", "dated", "date", "dos", "seen", "visit", "admitted",
    "admission", "discharged", "discharge", "returned", "return", "follow-up", "f/u", "scheduled", "appointment",
    "appt", "surgery", "procedure", "last", "next", "started", "stopped", "began", "onset", "dob", "by", "before",
    "after", "due", "effective", "as of", "starting", "ending", "between", "drawn", "collected", "received",
    "reported", "expired", "died", "death", "born", "week of", "planned", "called",
    # studies and documents, which are dated ("CXR 11/19", "labs 6/7", "dictated 6/7")
    "labs", "lab", "cxr", "xr", "x-ray", "ct", "cta", "mri", "mra", "echo", "tte", "tee", "ekg", "ecg", "eeg",
    "ultrasound", "us", "culture", "cultures", "biopsy", "scan", "imaging", "study", "egd", "colonoscopy",
    "dictated", "transcribed", "signed", "reviewed", "entered", "noted", "documented", "resulted", "performed",
    "done", "obtained", "updated",
]  # fmt: skip
#: Year given to dates written without one (a leap year, so 29 February parses); only month and day are written.
_NO_YEAR = 2000


def _month_number(token: str) -> int:
    return next(i for i, name in enumerate(MONTHS, start=1) if name.lower().startswith(token[:3].lower()))


def _ordinal(day: int) -> str:
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _pad(value: int, like: str, *, numeric: bool) -> str:
    """``value`` written like ``like``: "03" pads, "3" does not; "12" pads in numeric dates only."""
    padded = like.startswith("0") or (numeric and len(like) == 2)
    return f"{value:02d}" if padded else str(value)


def _render_month(month: int, like: str) -> str:
    name = MONTHS[month - 1]
    if len(like) > 3 and like.lower() == MONTHS[_month_number(like) - 1].lower():
        text = name  # written out in full
    elif like.lower() == "sept" and month == 9:
        text = "Sept"
    else:
        text = name[:3]
    if like.isupper():
        return text.upper()
    return text.lower() if like.islower() else text


def _year(y: str) -> int:
    if len(y) == 4:
        return int(y)
    value = int(y)
    return 2000 + value if value < 50 else 1900 + value


def parse_date(text: str) -> tuple[datetime.date, Callable[[datetime.date], str]] | None:
    """Parse a date found by :func:`date_recognizer`; return it and a renderer in the same format.

    Returns ``None`` when ``text`` is no valid date in a known format.
    """
    for kind, rx in {**DATE_PATTERNS, **YEARLESS_PATTERNS}.items():
        m = rx.fullmatch(text)
        if m is None:
            continue
        g = m.groupdict()
        try:
            month = int(g["m"]) if kind in _NUMERIC_MONTH else _month_number(g["month"])
            day = int(g["d"]) if g.get("d") else _NO_DAY
            value = datetime.date(_year(g["y"]) if g.get("y") else _NO_YEAR, month, day)
        except (ValueError, StopIteration):
            return None
        return value, _renderer(kind, g, value)
    return None


_NUMERIC_MONTH = frozenset({"iso", "mdy", "md", "dm", "my", "month_year"})
_MONTH_YEAR = frozenset({"my", "month_year", "mon_year"})


def _shifted_month(anchor: datetime.date, d: datetime.date) -> datetime.date:
    """The month a month-and-year date moves to when its mid-month ``anchor`` moved to ``d``: the shift rounded
    to whole months, and at least one month for any shift, so the original month and year never survive."""
    days = (d - anchor).days
    months = round(days / 30.4375) or (1 if days > 0 else -1 if days < 0 else 0)
    index = anchor.year * 12 + anchor.month - 1 + months
    return datetime.date(index // 12, index % 12 + 1, _NO_DAY)


def _renderer(kind: str, g: dict[str, str], parsed: datetime.date) -> Callable[[datetime.date], str]:
    def render(d: datetime.date) -> str:
        if kind in _MONTH_YEAR:
            d = _shifted_month(parsed, d)
        y = "" if not g.get("y") else f"{d.year:04d}" if len(g["y"]) == 4 else f"{d.year % 100:02d}"
        if kind in ("my", "month_year"):
            return f"{_pad(d.month, g['m'], numeric=True)}{g['sep']}{y}"
        if kind == "iso":
            return f"{y}{g['sep']}{_pad(d.month, g['m'], numeric=True)}{g['sep']}{_pad(d.day, g['d'], numeric=True)}"
        if kind == "md":
            return f"{_pad(d.month, g['m'], numeric=True)}{g['sep']}{_pad(d.day, g['d'], numeric=True)}"
        if kind == "dm":
            return f"{_pad(d.day, g['d'], numeric=True)}{g['sep']}{_pad(d.month, g['m'], numeric=True)}"
        if kind == "mdy":
            return f"{_pad(d.month, g['m'], numeric=True)}{g['sep']}{_pad(d.day, g['d'], numeric=True)}{g['sep']}{y}"
        month = _render_month(d.month, g["month"]) + g["dot"]
        if kind == "mon_year":
            return f"{month}{g['comma']} {y}"
        day = _pad(d.day, g["d"], numeric=False) + (_ordinal(d.day) if g.get("ord") else "")
        if kind == "d_mon_y":
            return f"{_pad(d.day, g['d'], numeric=True)}{g['sep']}{month}{g['sep']}{y}"
        if kind == "month_day_year":
            return f"{month} {day}{g['comma']} {y}"
        if kind == "month_day":
            return f"{month} {day}"
        if kind == "day_month":
            return f"{day}{g['of'] or ''} {month}"
        return f"{day}{g['of'] or ''} {month}{g['comma']} {y}"

    return render


#: An ISO 8601 date with a time of day: 2024-03-05T14:30, 2024-03-05 14:30:07.123456+01:00.
DATETIME_PATTERN = _rx(
    r"(?<![\d/\-.])\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+\-]\d{2}:?\d{2})?(?![\d:])"
)
_TIME_PARTS = re.compile(r"(?P<hm>\d{2}:\d{2})(?P<s>:\d{2})?(?P<f>\.\d{1,6})?(?P<tz>.*)")


def parse_datetime(text: str) -> tuple[datetime.datetime, Callable[[datetime.datetime], str]] | None:
    """Parse an ISO 8601 date with a time of day found by :data:`DATETIME_PATTERN`; return it (naive, as
    written: the zone suffix is carried over unchanged) and a renderer writing a datetime in the same form.

    Returns ``None`` when ``text`` is not such a valid date and time.
    """
    if DATETIME_PATTERN.fullmatch(text) is None:
        return None
    date_part, sep, time_part = text[:10], text[10], text[11:]
    parts = _TIME_PARTS.fullmatch(time_part)
    assert parts is not None  # the pattern above guarantees the shape
    try:
        value = datetime.datetime.fromisoformat(f"{date_part}T{parts['hm']}{parts['s'] or ''}{parts['f'] or ''}")
    except ValueError:
        return None
    fraction = len(parts["f"] or "") - 1  # digits written after the point (-1: none)

    def render(d: datetime.datetime) -> str:
        out = f"{d:%Y-%m-%d}{sep}{d:%H:%M}"
        if parts["s"]:
            out += f":{d:%S}"
        if fraction > 0:
            out += "." + f"{d.microsecond:06d}"[:fraction]
        return out + parts["tz"]

    return value, render


def date_recognizer() -> RegexRecognizer:
    """Dates: 2024-03-05, 03/05/2024 (3/5/24), March 5, 2024, Mar 5 2024, 5 Mar 2024, 5th of March, 2024; and
    ISO dates with a time of day (2024-03-05T14:30), scored 1.0 so they win over any reading of the date alone."""
    patterns = [
        RegexPattern(kind, rx, 0.85, 0, lambda s: parse_date(s) is not None) for kind, rx in DATE_PATTERNS.items()
    ]
    patterns.append(RegexPattern("iso datetime", DATETIME_PATTERN, 1.0, 0, lambda s: parse_datetime(s) is not None))
    return RegexRecognizer("DATE", patterns, name="ClinicalDateRecognizer")


def yearless_date_recognizer() -> RegexRecognizer:
    """Month/day without a year ("seen 11/19", "returned on 6/7", "6/7 at 14:30"): scored below the threshold
    unless a date word stands just before it; with a time of day after it, a date outright. Never before a dose,
    a unit or a score word ("1/2 tab", "5/5 strength", "2/6 murmur")."""
    md = YEARLESS_PATTERNS["md"].pattern
    valid = lambda s: parse_date(s) is not None  # noqa: E731
    return RegexRecognizer(
        "DATE",
        [
            RegexPattern("month/day", _rx(md + _NOT_A_DATE_AFTER), 0.3, 0, valid),
            RegexPattern("day/month", _rx(YEARLESS_PATTERNS["dm"].pattern + _NOT_A_DATE_AFTER), 0.3, 0, valid),
            RegexPattern("month/year", _rx(YEARLESS_PATTERNS["my"].pattern + _NOT_A_DATE_AFTER), 0.3, 0, valid),
            # "on the 24th", "since the 3rd": a day of the month named alone (replaced, there is no month to shift)
            RegexPattern(
                "day of the month",
                _rx(r"(?i:\b(?:on|since|from|until|till|by|before|after|over)[ \t]+the[ \t]+)"
                    r"(?P<date>(?:[1-9]|[12]\d|3[01])(?:st|nd|rd|th))\b(?![ \t]+(?i:day|week|month|year|floor|attempt"
                    r"|dose|time|cycle|line|visit|trial|try|round|session|percentile|centile|of[ \t]+\d))"),
                0.75,
                "date",
            ),
            # A range of two month/days ("6/7-6/9", "11/28 to 12/2"): both ends are dates
            RegexPattern(
                "month/day range start", _rx(rf"(?P<date>{md})(?={_RANGE_TO}{_MD_PLAIN})"), 0.7, "date", valid
            ),
            RegexPattern("month/day range end", _rx(rf"{md}{_RANGE_TO}(?P<date>{_MD_PLAIN})"), 0.7, "date", valid),
            # A month/day that opens a line of a log or list, followed by ":" or a dash ("11/19: called", "6/7 - seen")
            RegexPattern(
                "month/day entry",
                _rx(rf"(?m)^[ \t*\-\u2022>|]*(?P<date>{md})(?=[ \t]*(?::|[\-\u2013\u2014][ \t]))"),
                0.7,
                "date",
                valid,
            ),
            RegexPattern(
                "month/day time",
                _rx(rf"(?P<date>{md})[ \t]+(?:at[ \t]+|@[ \t]*)?"
                    r"(?:(?:[01]?\d|2[0-3]):?[0-5]\d\b|(?i:[ap]\.?m\.?)(?!\w))"),
                0.75,
                "date",
                valid,
            ),
        ],
        name="YearlessDateRecognizer",
        context=_DATE_WORDS,
        context_window=14,
        context_boost=0.45,
    )


def county_recognizer() -> RegexRecognizer:
    """US counties and their equivalents: "Cook County", "St. Tammany Parish", "Matanuska-Susitna Borough"."""
    return RegexRecognizer(
        "LOCATION",
        [
            RegexPattern(
                "county",
                _rx(r"\b(?:St\.?[ \t]+)?[A-Z][a-z'\-]+(?:[ \t\-][A-Z][a-z'\-]+){0,2}[ \t]+(?:County|Parish|Borough)\b"),
                0.85,
            ),
            # Irish and British usage: "Co. Kerry", "County Antrim"
            RegexPattern("co. county", _rx(r"\b(?:Co\.|County)[ \t]+[A-Z][a-z'\-]+(?:[ \t\-][A-Z][a-z'\-]+)?\b"), 0.7),
        ],
        name="CountyRecognizer",
    )


def clinical_recognizers() -> list[EntityRecognizer]:
    """All recognizers used for clinical notes (spaCy's PERSON recognizer is added by the engine)."""
    return [
        person_recognizer(),
        mrn_recognizer(),
        accession_recognizer(),
        other_id_recognizer(),
        long_number_recognizer(),
        code_id_recognizer(),
        ssn_recognizer(),
        phone_recognizer(),
        email_recognizer(),
        url_recognizer(),
        address_recognizer(),
        zip_recognizer(),
        facility_recognizer(),
        age_recognizer(),
        date_recognizer(),
        yearless_date_recognizer(),
        county_recognizer(),
        care_location_recognizer(),
    ]
