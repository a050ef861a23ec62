"""The notes engine's fast paths find exactly what the slower forms they replace find.

- the windowed URL recognizer against Presidio's own ``UrlRecognizer`` run on the whole text;
- the occurrence search of propagated values against the regular expression it replaces;
- the engine holds one URL recognizer, not Presidio's and ours side by side.
"""

from __future__ import annotations

import random
import re

from presidio_analyzer.predefined_recognizers import PhoneRecognizer, UrlRecognizer

from clinical_pipelines.deid.notes import NoteDeidentifier, _standalone_occurrences
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.recognizers import WindowedPhoneRecognizer, WindowedUrlRecognizer

_URL_PIECES = [
    "see", "https://portal.example.org/records?id=7", "www.clinic-north.com", "'http://a.b.co.uk/x'", "(www.x.net)",
    "\"intranet.local.org\"", "ends.", "3.5", "mg.", "Dr.Smith", "e.g.", "a@b.com", "v2.1.3", "x.com/path<y>",
    "HTTP://UPPER.GOV", "sub.domain.edu:8080/a", "\n", "\t", " ", "..", ".com", "foo.", "bar.museum", "10.0.0.1",
]


def _texts(seed: int, count: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice([" ", "", ", "]) + rnd.choice(_URL_PIECES) for _ in range(rnd.randint(1, 30)))
            for _ in range(count)]  # fmt: skip


def _found(recognizer: UrlRecognizer, text: str) -> list[tuple[int, int, float]]:
    return sorted((r.start, r.end, r.score) for r in recognizer.analyze(text, ["URL"]))


def test_windowed_url_recognizer_finds_what_presidios_finds() -> None:
    whole, windowed = UrlRecognizer(), WindowedUrlRecognizer()
    texts = _texts(7, 400)
    assert sum(len(_found(whole, t)) for t in texts) > 400  # the texts do hold URLs
    for text in texts:
        assert _found(windowed, text) == _found(whole, text), text


_PHONE_PIECES = [
    "call", "617-555-0134", "(617) 555 0134", "+1-912-490-4047x96669", "001-712-484-3088x6091", "ext.", "ext 12",
    "x", "#4", "+44 20 7946 0958", "020 7946 0958", "0151 496 0123", "+49 30 901820", "555-0134", "ph:", "tel.",
    "extension 204", "(555)", "12", "2024-01-05", "\n", ",", " ", "BP 120/80", "+353 1 234 5678",
]


def test_windowed_phone_recognizer_finds_what_presidios_finds_extensions_included() -> None:
    """Windows are cut around runs of digits: a number's extension ("x6091") must not be cut off by one."""
    whole, windowed = PhoneRecognizer(), WindowedPhoneRecognizer()
    rnd = random.Random(3)
    texts = ["".join(rnd.choice([" ", "", ", "]) + rnd.choice(_PHONE_PIECES) for _ in range(rnd.randint(1, 12)))
             for _ in range(300)]  # fmt: skip
    found = 0
    for text in texts:
        expected = sorted((r.start, r.end, r.score) for r in whole.analyze(text, ["PHONE_NUMBER"]))
        assert sorted((r.start, r.end, r.score) for r in windowed.analyze(text, ["PHONE_NUMBER"])) == expected, text
        found += len(expected)
    assert found > 300


def test_a_longer_match_cut_by_a_stronger_one_is_written_as_one_placeholder() -> None:
    engine = NoteDeidentifier(Pseudonymizer(b"fast paths test secret, 32+ bytes long"))
    for number in ("+1-912-490-4047x96669", "001-712-484-3088x6091", "0339567377x22", "+31900 593817x22"):
        result = engine.deidentify(f"Ph: {number} (cell)")
        assert result.text == "Ph: [PHONE] (cell)", result.text


def test_standalone_occurrences_match_the_regular_expression() -> None:
    rnd = random.Random(11)
    alphabet = "ab.@-_ \n1é"
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        value = "".join(rnd.choice("ab.-") for _ in range(rnd.randint(1, 3)))
        expected = [m.span() for m in re.finditer(r"(?<![\w@.\-])" + re.escape(value) + r"(?![\w@\-]|\.\w)", text)]
        assert list(_standalone_occurrences(text, value)) == expected, (text, value)


def test_the_engine_holds_one_url_recognizer() -> None:
    engine = NoteDeidentifier(Pseudonymizer(b"fast paths test secret, 32+ bytes long"))
    urls = [r for r in engine.analyzer.registry.recognizers if "URL" in r.supported_entities]
    assert [type(r) for r in urls] == [WindowedUrlRecognizer]
    result = engine.deidentify("Portal: https://portal.example.org/records?id=7 and www.clinic-north.com today.")
    assert "example.org" not in result.text and "clinic-north" not in result.text


def test_the_engine_holds_one_email_recognizer_that_finds_what_presidios_finds() -> None:
    """Presidio's predefined e-mail recognizer is left out because ours runs its patterns and its domain check at
    a higher score: every address the predefined one reports, ours reports on the same span."""
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    from clinical_pipelines.deid.nlp import make_tldextract_offline
    from clinical_pipelines.deid.recognizers import OfflineEmailRecognizer, email_recognizer

    engine = NoteDeidentifier(Pseudonymizer(b"fast paths test secret, 32+ bytes long"))
    emails = [r for r in engine.analyzer.registry.recognizers if "EMAIL_ADDRESS" in r.supported_entities]
    assert [type(r) for r in emails] == [OfflineEmailRecognizer]
    make_tldextract_offline()
    theirs, ours = EmailRecognizer(), email_recognizer()
    pieces = ["a.b@clinic.org", "x@y", "first.last+tag@sub.example.co.uk", "bad@domain.invalidtld", "me@mail.com.",
              "(j_doe@hospital.nhs.uk)", "e-mail:", "mail", "@", "u@10.0.0.1", "z@ex-ample.net;"]
    rnd = random.Random(11)
    compared = 0
    for _ in range(300):
        text = " ".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
        found = {(r.start, r.end): r.score for r in theirs.analyze(text, ["EMAIL_ADDRESS"])}
        mine = {(r.start, r.end): r.score for r in ours.analyze(text, ["EMAIL_ADDRESS"])}
        assert all(span in mine and mine[span] >= score for span, score in found.items()), text
        compared += len(found)
    assert compared > 100


def test_the_engine_loads_without_torch_and_leaves_torch_importable() -> None:
    """spaCy's thinc and Presidio import torch when it is installed (a second per process, never used by a CNN
    pipeline): the engine is built with it hidden, and a later ``import torch`` still works."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from clinical_pipelines.deid.notes import NoteDeidentifier\n"
        "from clinical_pipelines.deid.pseudonyms import Pseudonymizer\n"
        "engine = NoteDeidentifier(Pseudonymizer(b'k' * 32))\n"
        "assert engine.deidentify('Seen by Dr. John Alvarez on 03/04/2021.').text.count('[') >= 2\n"
        "print('torch' in sys.modules)\n"
        "import importlib.util\n"
        "print(importlib.util.find_spec('torch') is not None and __import__('torch') is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    loaded, importable = out.stdout.split()
    assert loaded == "False"
    assert importable == "True"  # this environment has the torch extra: it must still import afterwards


def test_the_engine_runs_spacy_on_numpy_blas_with_the_same_entities() -> None:
    from thinc.api import NumpyOps

    from clinical_pipelines_tests import notes_eval

    engine = NoteDeidentifier(Pseudonymizer(b"k" * 32))
    texts = [n.text for n in notes_eval.handwritten_notes()] + [n.text for n in notes_eval.faker_notes(60, seed=5)]
    nlp = engine.analyzer.nlp_engine.nlp["en"]  # type: ignore[attr-defined]
    nodes = [node for _, pipe in nlp.pipeline if hasattr(pipe, "model") for node in pipe.model.walk()]
    assert nodes and all(isinstance(n.ops, NumpyOps) and not n.ops.use_blis for n in nodes)
    fast = [r.spans for r in engine.deidentify_many(texts)]
    for node in nodes:
        node.ops = NumpyOps(use_blis=True)
    assert [r.spans for r in engine.deidentify_many(texts)] == fast
