"""De-identification of free-text clinical notes with Presidio (spaCy NER + clinical regex recognizers).

One :class:`NoteDeidentifier` builds one Presidio ``AnalyzerEngine`` (spaCy model loaded by path,
never downloaded) and one ``AnonymizerEngine``, lazily, and reuses them for every note.
:meth:`NoteDeidentifier.deidentify_many` runs spaCy over the notes in batches (``nlp.pipe``).

The analyzer is never less than Presidio's defaults: it loads Presidio's predefined recognizers for
English (what a default ``AnalyzerEngine`` loads, spaCy NER with Presidio's label mapping plus FAC)
and adds ours. spaCy's statistical guesses that are clinical vocabulary (eponyms, codes,
measurements, acronyms, headings; see :mod:`clinical_pipelines.deid.ner_filter`) are dropped;
pattern recognizers are never filtered. Overlapping detections keep every detected character.

Replacements keep the shape of the text:

==================  ===========================================================================
entity              replacement
==================  ===========================================================================
PERSON              ``[NAME]`` (titles are kept: "Dr. [NAME]", "Ms. [NAME]")
MRN                 the patient's pseudonym, ``Pseudonymizer.patient_id(mrn)`` ("PSN-...")
accession, other    ``[ID]``
DATE                the date moved by the patient's shift (``Pseudonymizer.date_shift_days``),
                    written in the same format as the original; ``[DATE]`` without a patient key
AGE_OVER_89         the number only becomes ``90+``: "93-year-old" -> "90+-year-old",
                    "age 95" -> "age 90+", "91 y/o" -> "90+ y/o"
PHONE_NUMBER (fax)  ``[PHONE]``
EMAIL_ADDRESS       ``[EMAIL]``
URL                 ``[URL]``
STREET_ADDRESS      ``[ADDRESS]`` (street, unit, city, state and ZIP together when written together)
FACILITY            ``[FACILITY]``
US_SSN              ``[SSN]``
ZIP_CODE            ``[ZIP]``
LOCATION            ``[LOCATION]`` (spaCy GPE, LOC, FAC)
ORGANIZATION, NRP   ``[ORGANIZATION]``, ``[NRP]``
DATE_TIME           Presidio's and spaCy's dates: shifted like DATE when they parse, else ``[DATE]``
IP_ADDRESS          ``[IP]``
card, bank, ...     ``[ID]`` (CREDIT_CARD, IBAN_CODE, US_BANK_NUMBER, US_DRIVER_LICENSE, US_ITIN,
                    US_PASSPORT, UK_NHS, MEDICAL_LICENSE, CRYPTO, MAC_ADDRESS, UUID)
==================  ===========================================================================

The patient key (which selects the date shift) is the one passed in, else the first MRN found in
the note. Because pseudonyms and shifts are keyed by the normalised MRN, a patient gets the same
pseudonym and the same shift here as in DICOM and tables.

Identifiers found once in a note with high confidence (names after a title or in a ``Name:``
field or after a relation such as "daughter", full names found by spaCy, MRNs, accession and other
ids, SSNs, phone numbers, e-mail addresses) are also removed wherever else the same string occurs
in that note ("Ms. Castellano" -> every "Castellano").
"""

from __future__ import annotations

import bisect
import re
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from clinical_pipelines.deid.ner_filter import NER_RECOGNIZER, drop_clinical_ner
from clinical_pipelines.deid.nlp import make_tldextract_offline, spacy_model_path
from clinical_pipelines.deid.recognizers import (
    WindowedPhoneRecognizer,
    clinical_recognizers,
    parse_date,
    parse_datetime,
)
from clinical_pipelines.deid.structure import UNKNOWN_WORD_RECOGNIZER, structure_recognizers

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from presidio_anonymizer import AnonymizerEngine
    from spacy.language import Language
    from spacy.tokens import Doc

    from clinical_pipelines.deid.pseudonyms import Pseudonymizer

LANGUAGE = "en"
#: Presidio's own phone recognizer scores 0.4 without context; below that are its weakest guesses
#: (any 8-17 digits as a bank account at 0.05, "B12" as a driver's licence at 0.01-0.3).
DEFAULT_SCORE_THRESHOLD = 0.4

#: Fixed replacement text per entity type (MRN, DATE and AGE_OVER_89 are computed).
REPLACEMENTS: dict[str, str] = {
    "PERSON": "[NAME]",
    "ACCESSION_NUMBER": "[ID]",
    "ID": "[ID]",
    "PHONE_NUMBER": "[PHONE]",
    "EMAIL_ADDRESS": "[EMAIL]",
    "URL": "[URL]",
    "STREET_ADDRESS": "[ADDRESS]",
    "FACILITY": "[FACILITY]",
    "US_SSN": "[SSN]",
    "ZIP_CODE": "[ZIP]",
    # Presidio's default entity types
    "LOCATION": "[LOCATION]",
    "ORGANIZATION": "[ORGANIZATION]",
    "NRP": "[NRP]",
    "IP_ADDRESS": "[IP]",
    "MAC_ADDRESS": "[ID]",
    "CREDIT_CARD": "[ID]",
    "IBAN_CODE": "[ID]",
    "US_BANK_NUMBER": "[ID]",
    "US_DRIVER_LICENSE": "[ID]",
    "US_ITIN": "[ID]",
    "US_PASSPORT": "[ID]",
    "UK_NHS": "[ID]",
    "MEDICAL_LICENSE": "[ID]",
    "CRYPTO": "[ID]",
    "UUID": "[ID]",
    "EMAIL": "[EMAIL]",
}
#: spaCy NER labels -> Presidio entity types: Presidio's default mapping, plus FAC (buildings, airports,
#: hospitals) as a location. DATE_TIME is shifted like DATE where it parses, else ``[DATE]``.
NER_MAPPING: dict[str, str] = {
    "PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "LOCATION": "LOCATION", "GPE": "LOCATION",
    "FAC": "LOCATION", "ORG": "ORGANIZATION", "DATE": "DATE_TIME", "TIME": "DATE_TIME", "NORP": "NRP",
}  # fmt: skip
#: spaCy labels that are no identifier (Presidio maps none of them either).
NER_IGNORED = ["CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
               "LANGUAGE"]  # fmt: skip
#: Types whose replacement is computed: MRN -> pseudonym, dates -> shifted, ages -> "90+".
_COMPUTED = {"MRN", "DATE", "DATE_TIME", "AGE_OVER_89", "AGE"}
DATE_PLACEHOLDER = "[DATE]"
AGE_REPLACEMENT = "90+"

#: Entity types whose detected strings are also removed wherever else they occur in the note.
_PROPAGATED = {"MRN", "ACCESSION_NUMBER", "ID", "US_SSN", "PHONE_NUMBER", "EMAIL_ADDRESS"}
#: Recognizers whose results are guesses (spaCy's NER, our unknown-word names), not patterns.
_GUESSERS = frozenset({NER_RECOGNIZER, UNKNOWN_WORD_RECOGNIZER})
#: Recognizers whose PERSON results are precise enough to propagate word by word.
_NAME_SOURCES = {"ClinicalNameRecognizer"}
_NAME_STOPWORDS = {
    "the", "and", "patient", "doctor", "hospital", "clinic", "center", "medical", "memorial", "saint",
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
}  # fmt: skip


@dataclass(frozen=True)
class NoteResult:
    """A de-identified note and how many identifiers of each entity type were replaced (no values)."""

    text: str
    entity_counts: dict[str, int] = field(default_factory=dict)
    # (entity type, start, end) in the ORIGINAL text: offsets, not values, for the residual-PHI scan.
    spans: tuple[tuple[str, int, int], ...] = ()


class NoteDeidentifier:
    """Presidio-based de-identification of clinical notes with keyed, cross-modality-consistent pseudonyms."""

    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        spacy_model: str | None = None,
    ) -> None:
        self.pseudonymizer = pseudonymizer
        self.score_threshold = score_threshold
        self._spacy_model = spacy_model
        self._analyzer: AnalyzerEngine | None = None
        self._anonymizer: AnonymizerEngine | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- engines (built once, lazily)

    @property
    def analyzer(self) -> AnalyzerEngine:
        """The shared Presidio analyzer (built on first use)."""
        if self._analyzer is None:
            self._build()
        assert self._analyzer is not None
        return self._analyzer

    @property
    def anonymizer(self) -> AnonymizerEngine:
        """The shared Presidio anonymizer (built on first use)."""
        if self._anonymizer is None:
            self._build()
        assert self._anonymizer is not None
        return self._anonymizer

    def _build(self) -> None:
        with self._lock:
            if self._analyzer is not None:
                return
            from presidio_analyzer import RecognizerRegistry
            from presidio_analyzer.nlp_engine import NlpEngineProvider
            from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer, UrlRecognizer
            from presidio_anonymizer import AnonymizerEngine

            make_tldextract_offline()
            # Always a path: Presidio calls spacy.cli.download for a name that is neither package nor path.
            model = self._spacy_model or str(spacy_model_path())
            nlp_engine = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": LANGUAGE, "model_name": model}],
                    # Presidio's default label mapping, plus FAC (buildings, facilities) as a location.
                    "ner_model_configuration": {
                        "model_to_presidio_entity_mapping": NER_MAPPING,
                        "labels_to_ignore": NER_IGNORED,
                    },
                }
            ).create_engine()
            # Only the entity recognizer's output is used: en_core_web_sm's NER has its own tok2vec, and
            # context words are compared with lower-cased tokens (_with_token_lemmas) instead of lemmas,
            # so the tagger, parser and lemmatizer are not run.
            nlp = nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]
            keep = {"ner"} | {name for name, pipe in nlp.pipeline if "ner" in getattr(pipe, "listening_components", ())}
            for name in list(nlp.pipe_names):
                if name not in keep:
                    nlp.disable_pipe(name)
            _use_numpy_blas(nlp)
            # Never fewer recognizers than Presidio's defaults: its predefined set for English (what a
            # default AnalyzerEngine loads) plus ours.
            registry = RecognizerRegistry(supported_languages=[LANGUAGE])
            registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
            nlp_engine._doc_to_nlp_artifact = types.MethodType(_doc_to_artifacts, nlp_engine)  # type: ignore[attr-defined]
            for i, recognizer in enumerate(registry.recognizers):
                if type(recognizer) is PhoneRecognizer:  # same regions and context, 3x faster on long notes
                    registry.recognizers[i] = WindowedPhoneRecognizer(
                        context=recognizer.context, supported_regions=recognizer.supported_regions
                    )
            # Ours include Presidio's URL recognizer, windowed (the same matches), and its e-mail recognizer with
            # the same patterns and domain check at a higher score: the predefined copies would run the same
            # patterns over the whole note a second time.
            registry.recognizers = [r for r in registry.recognizers if type(r) not in (UrlRecognizer, EmailRecognizer)]
            for recognizer in [*clinical_recognizers(), *structure_recognizers()]:
                registry.add_recognizer(recognizer)
            self._anonymizer = AnonymizerEngine()
            self._analyzer = _grouping_engine_class()(
                registry=registry,
                nlp_engine=nlp_engine,
                supported_languages=[LANGUAGE],
                default_score_threshold=self.score_threshold,
                context_aware_enhancer=_only_unenhanced_class()(),
            )

    # ---------------------------------------------------------------- public API

    def analyze(self, text: str, nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        """Non-overlapping identifier spans in ``text``, after propagation (sorted by position)."""
        text = analysis_view(text)
        if nlp_artifacts is None:
            nlp_artifacts = self.analyzer.nlp_engine.process_text(text, LANGUAGE)
        results = self.analyzer.analyze(
            text=text,
            language=LANGUAGE,
            nlp_artifacts=_with_token_lemmas(nlp_artifacts),
            score_threshold=self.score_threshold,
        )
        results = drop_clinical_ner(text, trim_results(text, results))
        for r in results:  # Presidio's dates that parse are shifted like ours, so they are ours
            if r.entity_type == "DATE_TIME" and parse_date(text[r.start : r.end]) is not None:
                r.entity_type = "DATE"
        return _resolve_overlaps(text, _propagate(text, results))

    def deidentify(self, text: str, patient_key: str | None = None) -> NoteResult:
        """De-identify one note; ``patient_key`` (an MRN) selects the date shift, else the note's first MRN."""
        artifacts = self.analyzer.nlp_engine.process_text(analysis_view(text), LANGUAGE)
        return self._deidentify(text, artifacts, patient_key)

    def deidentify_many(
        self,
        texts: Iterable[str],
        patient_keys: Sequence[str | None] | None = None,
        batch_size: int = 32,
    ) -> list[NoteResult]:
        """De-identify many notes, running spaCy over them in batches of ``batch_size`` (``nlp.pipe``)."""
        texts = list(texts)
        keys: list[str | None] = list(patient_keys) if patient_keys is not None else [None] * len(texts)
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} patient keys for {len(texts)} texts")
        views = [analysis_view(t) for t in texts]
        batches = self.analyzer.nlp_engine.process_batch(views, LANGUAGE, batch_size=batch_size)
        return [
            self._deidentify(text, artifacts, key)
            for text, (_, artifacts), key in zip(texts, batches, keys, strict=True)
        ]

    def analyze_many(self, texts: Sequence[str], batch_size: int = 32) -> list[list[RecognizerResult]]:
        """:meth:`analyze` for many texts, with spaCy run over them in batches."""
        views = [analysis_view(t) for t in texts]
        batches = self.analyzer.nlp_engine.process_batch(views, LANGUAGE, batch_size=batch_size)
        return [self.analyze(text, artifacts) for text, artifacts in batches]

    # ---------------------------------------------------------------- internals

    def _deidentify(self, text: str, artifacts: NlpArtifacts, patient_key: str | None) -> NoteResult:
        from presidio_anonymizer.entities import OperatorConfig

        results = self.analyze(text, artifacts)
        if patient_key is None:
            patient_key = next((text[r.start : r.end] for r in results if r.entity_type == "MRN"), None)
        operators = {entity: OperatorConfig("replace", {"new_value": value}) for entity, value in REPLACEMENTS.items()}
        operators["MRN"] = OperatorConfig("custom", {"lambda": self.pseudonymizer.patient_id})
        operators["DATE"] = OperatorConfig("custom", {"lambda": self._date_replacer(patient_key)})
        operators["DATE_TIME"] = operators["DATE"]
        operators["AGE_OVER_89"] = OperatorConfig("custom", {"lambda": _age_replacement})
        operators["AGE"] = operators["AGE_OVER_89"]
        operators["DEFAULT"] = OperatorConfig("replace", {"new_value": "[REDACTED]"})
        anonymized = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=operators)
        counts = Counter(r.entity_type for r in results)
        spans = tuple((r.entity_type, r.start, r.end) for r in sorted(results, key=lambda r: r.start))
        return NoteResult(text=anonymized.text, entity_counts=dict(sorted(counts.items())), spans=spans)

    def _date_replacer(self, patient_key: str | None) -> Callable[[str], str]:
        def replace(value: str) -> str:
            if patient_key is None:
                return DATE_PLACEHOLDER
            timed = parse_datetime(value)
            if timed is not None:  # a date with its time moves by the whole offset, as in DICOM
                moment, render_moment = timed
                return render_moment(self.pseudonymizer.shift_datetime(moment, patient_key))
            parsed = parse_date(value)
            if parsed is None:
                return DATE_PLACEHOLDER
            date, render = parsed
            return render(self.pseudonymizer.shift_date(date, patient_key))

        return replace


def _age_replacement(value: str) -> str:
    if not any(c.isdigit() for c in value):  # written in words: "ninety-three"
        return AGE_REPLACEMENT
    return re.sub(r"\d+", AGE_REPLACEMENT, value, count=1)


_ESCAPED_BREAK = re.compile(r"\\[nrt]")


def analysis_view(text: str) -> str:
    """``text`` as the recognizers read it: line breaks and tabs written as escapes (``\\n``, as exports from
    JSON or CSV leave them) read as white space, each two characters becoming two (offsets are unchanged)."""
    if "\\" not in text:
        return text
    return _ESCAPED_BREAK.sub(lambda m: " \n" if m.group() != "\\t" else "  ", text)


def _full_name(value: str) -> bool:
    """A spaCy PERSON written like a full name: two to four words, each a capital then lower case ("Ann Lee")."""
    words = value.split()
    long_words = [w for w in words if len(w) > 2]  # initials ("J.") are not checked
    return 2 <= len(words) <= 4 and all(w[0].isupper() and w[1:].replace("-", "").islower() for w in long_words)


def _propagate(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Add every other occurrence in ``text`` of confidently detected identifier strings."""
    from presidio_analyzer import RecognizerResult

    wanted: dict[str, tuple[str, float]] = {}
    for r in results:
        value = text[r.start : r.end]
        if r.entity_type in _PROPAGATED and len(value) >= 4:
            wanted.setdefault(value, (r.entity_type, r.score))
        elif r.entity_type == "PERSON" and (_recognizer_name(r) in _NAME_SOURCES or _full_name(value)):
            for word in re.split(r"[\s^]+", value):
                word = word.strip(".,'")
                if len(word) >= 3 and word[0].isupper() and word.lower() not in _NAME_STOPWORDS:
                    wanted.setdefault(word, ("PERSON", r.score))
    extra = _coordinated_names(text, results)
    for value, (entity, score) in wanted.items():
        for start, end in _standalone_occurrences(text, value):
            extra.append(RecognizerResult(entity, start, end, score))
    return results + extra


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"  # what ``\w`` matches


def _standalone_occurrences(text: str, value: str) -> Iterable[tuple[int, int]]:
    r"""Where ``value`` stands on its own in ``text``: what ``re.finditer`` finds for
    ``(?<![\w@.\-])value(?![\w@\-]|\.\w)`` (no word, e-mail or hyphenated word runs on either side), without
    compiling a pattern for every value of every note."""
    size = len(text)
    i = text.find(value)
    while i >= 0:
        j = i + len(value)
        before = text[i - 1] if i else ""
        after = text[j] if j < size else ""
        if (before == "" or not (_word_char(before) or before in "@.-")) and (
            after == "" or not (_word_char(after) or after in "@-" or (after == "." and j + 1 < size
                                                                       and _word_char(text[j + 1])))
        ):  # fmt: skip
            yield i, j
            i = text.find(value, j) if j > i else text.find(value, i + 1)
        else:
            i = text.find(value, i + 1)


_COORDINATED_BEFORE = re.compile(r"(?:\b[A-Z][a-z'\-]+,[ \t]+)*\b[A-Z][a-z'\-]+,?[ \t]+(?:and|or|&)[ \t]+$")
_COORDINATED_AFTER = re.compile(r",?[ \t]+(?:and|or|&)[ \t]+([A-Z][a-z'\-]+)\b")
_CAPITALISED = re.compile(r"[A-Z][a-z'\-]+")


def _coordinated_names(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Single capitalised words listed with a name ("Amber, Precious and Sunny Oduya", "Tobias and Amara"): the
    members of a list of people are people. Function words and month or day names are left alone."""
    from presidio_analyzer import RecognizerResult
    from spacy.lang.en.stop_words import STOP_WORDS

    found = []
    for r in results:
        if r.entity_type != "PERSON":
            continue
        spans = []
        before = _COORDINATED_BEFORE.search(text, max(0, r.start - 80), r.start)
        if before is not None:
            spans += [(before.start() + m.start(), before.start() + m.end())
                      for m in _CAPITALISED.finditer(before.group())]  # fmt: skip
        after = _COORDINATED_AFTER.match(text, r.end)
        if after is not None:
            spans.append(after.span(1))
        for s, e in spans:
            word = text[s:e].lower()
            if word in _TITLE_WORDS or word in STOP_WORDS or word[:3] in _MONTH_PREFIXES or word in _WEEKDAYS:
                continue  # "Dr. Lovelace and Mr. Babbage": a title, not a listed name
            metadata = r.recognition_metadata
            found.append(RecognizerResult("PERSON", s, e, r.score * 0.9, recognition_metadata=metadata))
    return found


_MONTH_PREFIXES = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_TITLE_WORDS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "sir", "dame", "doctor", "nurse", "father"}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def is_precise_name(result: RecognizerResult) -> bool:
    """True for a PERSON found by a pattern (title, ``Name:`` field), not by spaCy's statistical NER."""
    return _recognizer_name(result) in _NAME_SOURCES


def is_statistical_guess(result: RecognizerResult) -> bool:
    """True for a result of spaCy's statistical NER (Presidio's SpacyRecognizer), not of a pattern recognizer."""
    return _recognizer_name(result) in _GUESSERS


def is_unknown_word_guess(result: RecognizerResult) -> bool:
    """True for a name guessed only because no dictionary knows the word (see ``UnknownWordNameRecognizer``)."""
    return _recognizer_name(result) == UNKNOWN_WORD_RECOGNIZER


def _recognizer_name(result: RecognizerResult) -> str | None:
    metadata = result.recognition_metadata or {}
    return metadata.get("recognizer_name")


def _use_numpy_blas(nlp: Language) -> None:
    """Run the pipeline's matrix products through numpy's BLAS instead of thinc's bundled ``blis``.

    The same products, so the same entities (checked on every evaluation set); measured on this project's
    machines, spaCy's NER ran 1.8x faster (9.3 s against 17.6 s on 300 notes, one process). Only CPU
    pipelines are touched: a pipeline on a GPU keeps its own ops.
    """
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    for _, pipe in nlp.pipeline:
        model = getattr(pipe, "model", None)
        if model is None or not all(isinstance(node.ops, NumpyOps) for node in model.walk()):
            continue
        for node in model.walk():
            node.ops = ops


@cache
def _grouping_engine_class() -> type[AnalyzerEngine]:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult

    class GroupingAnalyzerEngine(AnalyzerEngine):
        """Presidio's engine with its per-recognizer context step done in one pass over the results.

        Presidio splits all results into "this recognizer's" and "the others'" once per recognizer (about 40
        here), reading each result's recognizer id every time, only to hand them to a hook that none of these
        recognizers overrides. Here the results are grouped by recognizer id once; a recognizer that overrides
        the hook still gets both lists; the order of the results is Presidio's."""

        def _enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
            key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
            by_recognizer: dict[str, list[RecognizerResult]] = {}
            for r in raw_results:
                by_recognizer.setdefault(r.recognition_metadata[key], []).append(r)
            results: list[RecognizerResult] = []
            for recognizer in recognizers:
                own = by_recognizer.get(recognizer.id, [])
                if type(recognizer).enhance_using_context is not EntityRecognizer.enhance_using_context:
                    others = [r for r in raw_results if r.recognition_metadata[key] != recognizer.id]
                    own = recognizer.enhance_using_context(
                        text=text, raw_recognizer_results=own, other_raw_recognizer_results=others,
                        nlp_artifacts=nlp_artifacts, context=context,
                    )  # fmt: skip
                results.extend(own)
            return self.context_aware_enhancer.enhance_using_context(
                text=text, raw_results=results, nlp_artifacts=nlp_artifacts, recognizers=recognizers, context=context
            )

    return GroupingAnalyzerEngine


def _only_unenhanced_class() -> type:
    from presidio_analyzer import RecognizerResult
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    class OnlyUnenhanced(LemmaContextAwareEnhancer):
        """Presidio's context enhancer, given only the results it can change: not yet scored with context, from
        a recognizer that has context words (ours apply their own; spaCy's NER has none). The others cost a deep
        copy and a walk over the note's tokens each, for nothing."""

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
            enhanced = RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY
            recognizer_id = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
            with_context = {r.id for r in recognizers if getattr(r, "context", None)}

            def open_(r: RecognizerResult) -> bool:
                metadata = r.recognition_metadata or {}
                return not metadata.get(enhanced) and metadata.get(recognizer_id) in with_context

            todo = [r for r in raw_results if open_(r)]
            done = [r for r in raw_results if not open_(r)]
            return done + super().enhance_using_context(text, todo, nlp_artifacts, recognizers, context)

        @staticmethod
        def _find_index_of_match_token(word, start, tokens, tokens_indices):  # type: ignore[no-untyped-def]
            # Presidio's loop, as a search: the first token that ends after ``start`` (tokens are in order).
            import numpy as np
            from spacy.attrs import IDX, LENGTH

            offsets = tokens.to_array([IDX, LENGTH]).reshape(-1, 2)
            index = int(np.searchsorted(offsets[:, 0] + offsets[:, 1], start, side="right"))
            if index >= len(offsets):
                raise ValueError("a match with no token after its start")  # what Presidio raises, without the value
            return index

    return OnlyUnenhanced


def trim_results(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Results without leading or trailing white space (spaCy's spans in tables end in padding), and spaCy's
    spans that run across a line break split into one span per line (a heading and the next line's label)."""
    from presidio_analyzer import RecognizerResult

    out: list[RecognizerResult] = []
    for r in results:
        parts = [(r.start, r.end)]
        if _recognizer_name(r) == NER_RECOGNIZER and "\n" in text[r.start : r.end]:
            parts, pos = [], r.start
            for line in text[r.start : r.end].split("\n"):
                parts.append((pos, pos + len(line)))
                pos += len(line) + 1
        for start, end in parts:
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            if start < end and (start, end) == (r.start, r.end):
                out.append(r)
            elif start < end:
                metadata = r.recognition_metadata
                out.append(RecognizerResult(r.entity_type, start, end, r.score, recognition_metadata=metadata))
    return out


def _with_token_lemmas(artifacts: NlpArtifacts) -> NlpArtifacts:
    """Use lower-cased tokens as lemmas for Presidio's context enhancer (the lemmatizer pipe is not run)."""
    if artifacts.tokens is not None and not any(artifacts.lemmas):
        _set_token_lemmas(artifacts, artifacts.tokens)
    return artifacts


def _set_token_lemmas(artifacts: NlpArtifacts, doc: Doc) -> None:
    from spacy.attrs import IS_PUNCT, IS_STOP, LOWER

    strings = doc.vocab.strings
    # From the token array, not Token objects (faster); keywords as NlpArtifacts.set_keywords makes them:
    # no stop words, no punctuation, split at ":".
    rows = doc.to_array([LOWER, IS_STOP, IS_PUNCT]).reshape(-1, 3).tolist()
    artifacts.lemmas = [strings[h] for h, _, _ in rows]
    words = [strings[h] for h, stop, punct in rows if not stop and not punct]
    artifacts.keywords = [part for word in words for part in word.split(":")]


def _doc_to_artifacts(engine: object, doc: Doc, language: str) -> NlpArtifacts:
    """``SpacyNlpEngine._doc_to_nlp_artifact`` without a Python loop over the tokens (token offsets, lemmas and
    keywords come from the doc's arrays); entities and scores exactly as Presidio computes them."""
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from spacy.attrs import IDX

    entities, scores = engine._get_updated_entities(  # type: ignore[attr-defined]
        engine._get_entities(doc),
        engine._get_scores_for_entities(doc),  # type: ignore[attr-defined]
    )
    artifacts = NlpArtifacts(entities=entities, tokens=doc, tokens_indices=doc.to_array(IDX).tolist(), lemmas=[],
                             nlp_engine=engine, language=language, scores=scores)  # fmt: skip
    _set_token_lemmas(artifacts, doc)
    return artifacts


@cache
def _our_recognizer_names() -> frozenset[str]:
    """Our recognizers win ties with Presidio's defaults (they carry the replacement we want)."""
    return frozenset(r.name for r in [*clinical_recognizers(), *structure_recognizers()])


#: Entity type given to the uncovered part of a span whose replacement is computed from the whole value.
_PIECE_TYPE = {"MRN": "ID", "DATE": "DATE_TIME", "DATE_TIME": "DATE_TIME", "AGE_OVER_89": "ID", "AGE": "ID"}


def _resolve_overlaps(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """A non-overlapping set that still covers every detected character.

    Higher score wins, then our recognizers, then the longer span, then the earlier one. The parts of a
    losing span that the winners do not cover are kept as spans of their own, so no detected text survives.
    """
    from presidio_analyzer import RecognizerResult

    ours = _our_recognizer_names()
    kept: list[RecognizerResult] = []
    covered: list[tuple[int, int]] = []  # the kept spans, which never overlap, in order
    order = sorted(results, key=lambda r: (-r.score, _recognizer_name(r) not in ours, -(r.end - r.start), r.start))
    for r in order:
        pieces = [(r.start, r.end)]
        i = max(0, bisect.bisect_right(covered, (r.start, r.start)) - 1)
        while i < len(covered) and covered[i][0] < r.end:
            k_start, k_end = covered[i]
            pieces = [p for s, e in pieces for p in ((s, min(e, k_start)), (max(s, k_end), e)) if p[0] < p[1]]
            i += 1
        if pieces == [(r.start, r.end)]:
            kept.append(r)
            bisect.insort(covered, (r.start, r.end))
            continue
        entity = _PIECE_TYPE.get(r.entity_type, r.entity_type)
        for s, e in pieces:
            while s < e and not text[s].isalnum():
                s += 1
            while e > s and not text[e - 1].isalnum():
                e -= 1
            if s < e:
                kept.append(RecognizerResult(entity, s, e, r.score, recognition_metadata=r.recognition_metadata))
                bisect.insort(covered, (s, e))
    return _join_touching(sorted(kept, key=lambda r: r.start))


def _join_touching(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Spans with fixed placeholders that touch (one ends where the next starts, inside one token) joined into one,
    of the higher-scored span's type.

    A longer match cut by a stronger one ("+1-912-490-4047" inside "+1-912-490-4047x96669") leaves its remainder
    as a piece of its own, and a piece of another recognizer may take the rest of the token: one identifier,
    written as one ``[PHONE]``, not ``[PHONE][PHONE]`` or ``[PHONE][ID]``. Spans whose replacement is computed
    from the value (dates, MRNs, ages) are left as they are.
    """
    from presidio_analyzer import RecognizerResult

    joined: list[RecognizerResult] = []
    for r in results:
        last = joined[-1] if joined else None
        if (
            last is not None
            and last.end == r.start
            and last.entity_type in REPLACEMENTS
            and r.entity_type in REPLACEMENTS
        ):
            lead = r if r.score > last.score else last
            joined[-1] = RecognizerResult(
                lead.entity_type, last.start, r.end, lead.score, recognition_metadata=lead.recognition_metadata
            )
            continue
        joined.append(r)
    return joined
