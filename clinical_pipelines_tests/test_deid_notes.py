"""Clinical note de-identification: no planted identifier survives, keyed pseudonyms and date shifts, no network."""

from __future__ import annotations

import datetime
import re
import socket

import pytest
import spacy.cli

from clinical_pipelines.deid import nlp as deid_nlp
from clinical_pipelines.deid.notes import NoteDeidentifier, NoteResult
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.recognizers import parse_date
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.synth.formats import iso_date, long_date, short_date, us_date
from clinical_pipelines.synth.models import Canary

KEY = b"note-deid-test-key-0123456789abcdef"
SEEDS = (1, 2)
#: Canary kinds that synthetic notes plant; each must be covered by the corpus used here.
NOTE_KINDS = {"patient_name", "mrn", "birth_date", "date", "phone", "address", "zip", "email", "ssn", "accession",
              "institution", "physician_name", "age_over_89"}  # fmt: skip
DATE_FORMATS = (("%Y-%m-%d", iso_date), ("%m/%d/%Y", us_date), ("%B %d, %Y", long_date), ("%d %b %Y", short_date))


@pytest.fixture(scope="module")
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(KEY)


@pytest.fixture(scope="module")
def deid(pseudonymizer: Pseudonymizer) -> NoteDeidentifier:
    return NoteDeidentifier(pseudonymizer)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, list[Canary]]]:
    """(note text, canaries of its corpus) for every synthetic note of every seed."""
    out = []
    for seed in SEEDS:
        synth = SynthCorpus(seed, n_patients=6, slices_per_series=1, rows=16, columns=16)
        notes = [f.data.decode() for drop in synth.iter_drops() for f in drop.files if f.modality == "notes"]
        canaries = synth.canaries()
        out += [(text, canaries) for text in notes]
    assert len(out) >= 20
    return out


@pytest.fixture(scope="module")
def deidentified(deid: NoteDeidentifier, corpus: list[tuple[str, list[Canary]]]) -> list[NoteResult]:
    return deid.deidentify_many([text for text, _ in corpus])


def _occurs(canary: Canary, text: str) -> bool:
    if canary.kind == "zip":  # 5-digit values: whole tokens only
        return re.search(rf"(?<![\w-]){re.escape(canary.value)}(?![\w-])", text) is not None
    return canary.value in text


def _note_mrn(text: str) -> str:
    match = re.search(r"^MRN: (\S+)$", text, re.M)
    assert match, "synthetic note without an MRN line"
    return match.group(1)


def test_no_planted_identifier_survives(corpus, deidentified) -> None:
    planted_kinds = set()
    for (text, canaries), result in zip(corpus, deidentified, strict=True):
        for canary in canaries:
            if _occurs(canary, text):
                planted_kinds.add(canary.kind)
                assert not _occurs(canary, result.text), f"{canary.kind} survived de-identification"
    assert planted_kinds >= NOTE_KINDS, f"corpus lacks {NOTE_KINDS - planted_kinds}"


def test_dates_are_shifted_by_the_patients_shift_in_the_same_format(corpus, deidentified, pseudonymizer) -> None:
    checked = 0
    for (text, canaries), result in zip(corpus, deidentified, strict=True):
        mrn = _note_mrn(text)
        shift = datetime.timedelta(days=pseudonymizer.date_shift_days(mrn))
        assert shift.days != 0
        for canary in canaries:
            if canary.kind not in ("date", "birth_date") or canary.patient_mrn != mrn or canary.value not in text:
                continue
            for fmt, render in DATE_FORMATS:
                try:
                    original = datetime.datetime.strptime(canary.value, fmt).date()
                except ValueError:
                    continue
                if render(original) == canary.value:
                    assert render(original + shift) in result.text
                    checked += 1
                    break
            else:
                pytest.fail(f"unexpected date format {canary.value!r}")
    assert checked >= 50


def test_mrn_becomes_the_keyed_patient_pseudonym(corpus, deidentified, pseudonymizer) -> None:
    for (text, _), result in zip(corpus, deidentified, strict=True):
        mrn = _note_mrn(text)
        assert f"MRN: {pseudonymizer.patient_id(mrn)}\n" in result.text
        assert mrn not in result.text


def test_replacement_formats(corpus, deidentified) -> None:
    text, result = corpus[0][0], deidentified[0].text
    assert "Patient: [NAME]\n" in result
    assert "SSN: [SSN]\n" in result
    assert "Phone: [PHONE]\n" in result
    assert "E-mail: [EMAIL]\n" in result
    assert "Address: [ADDRESS]\n" in result
    assert "Accession number: [ID]\n" in result
    assert result.startswith("[FACILITY]\n[ADDRESS]\n")
    assert "Dr. [NAME]" in result
    assert "RADIOLOGY REPORT" in text or "SUMMARY" in text or "PROGRESS NOTE" in text
    old = [r.text for r in deidentified if "90+-year-old" in r.text]
    assert old, "no age over 89 in the corpus"


def test_deidentify_many_matches_deidentify(deid, corpus, deidentified) -> None:
    for (text, _), batched in zip(corpus[:8], deidentified, strict=False):
        assert deid.deidentify(text) == batched
    texts = [text for text, _ in corpus[:5]]
    assert deid.deidentify_many(texts, batch_size=2) == deidentified[:5]


def test_entity_counts_hold_counts_only(corpus, deidentified) -> None:
    for (text, canaries), result in zip(corpus, deidentified, strict=True):
        counts = result.entity_counts
        assert all(isinstance(k, str) and k.isupper() and isinstance(v, int) and v > 0 for k, v in counts.items())
        assert {"PERSON", "MRN", "DATE", "US_SSN", "PHONE_NUMBER", "EMAIL_ADDRESS"} <= counts.keys()
        dumped = repr(counts)
        assert not any(c.value in dumped for c in canaries if c.value in text)


def test_patient_key_selects_the_date_shift(deid, pseudonymizer) -> None:
    text = "Seen on 2024-03-05 (March 5, 2024; 3/5/24; 5 Mar 2024; Mar 5 2024; 03/05/2024)."
    assert deid.deidentify(text).text.count("[DATE]") == 6  # no MRN, no key: placeholders
    out = deid.deidentify(text, patient_key="mrn0000001").text
    d = datetime.date(2024, 3, 5) + datetime.timedelta(days=pseudonymizer.date_shift_days("MRN0000001"))
    mon = d.strftime("%b")
    expected = (f"Seen on {d:%Y-%m-%d} ({d:%B} {d.day}, {d.year}; {d.month}/{d.day}/{d:%y}; {d.day} {mon} {d.year}; "
                f"{mon} {d.day} {d.year}; {d:%m/%d/%Y}).")  # fmt: skip
    assert out == expected
    # Without a key, the first MRN in the note keys the shift.
    keyed = deid.deidentify("MRN: MRN7654321. Admitted 2024-03-05.").text
    d = pseudonymizer.shift_date(datetime.date(2024, 3, 5), "MRN7654321")
    assert keyed == f"MRN: {pseudonymizer.patient_id('MRN7654321')}. Admitted {d:%Y-%m-%d}."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A 93-year-old woman.", "A 90+-year-old woman."),
        ("Patient age 93, stable.", "Patient age 90+, stable."),
        ("93 y/o male with cough", "90+ y/o male with cough"),
        ("She is 101 years old.", "She is 90+ years old."),
        ("aged 95 at admission", "aged 90+ at admission"),
        ("A 44-year-old man; age 62.", "A 44-year-old man; age 62."),
    ],
)
def test_ages_over_89(deid, text, expected) -> None:
    assert deid.deidentify(text).text == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Lives at 12 Oak Street, Apt 4B, Springfield, IL 62704 with family.", "Lives at [ADDRESS] with family."),
        ("Mailing: Boulder, CO 80301.", "Mailing: [ADDRESS]."),
        ("Zip code 80301 on file.", "Zip code [ZIP] on file."),
        ("Transferred from Mercy General Hospital today.", "Transferred from [FACILITY] today."),
        ("Fax results to 303-555-0199 please.", "Fax results to [PHONE] please."),
        ("Portal: https://portal.example.com/records/1", "Portal: [URL]"),
        ("Contact jane.roe@example.org or visit www.example.com", "Contact [EMAIL] or visit [URL]"),
        ("SSN 123-45-6789.", "SSN [SSN]."),
        ("Medical record number: 00123456; accession #RAD-998877", "Medical record number: PSN-"),
        ("Seen by Dr. Ada B. Lovelace and Mr. Babbage.", "Seen by Dr. [NAME] and Mr. [NAME]."),
    ],
)
def test_clinical_recognizers(deid, text, expected) -> None:
    out = deid.deidentify(text).text
    assert out.startswith(expected) if expected.endswith("PSN-") else out == expected
    if "accession" in text:
        assert out.endswith("accession #[ID]") and "00123456" not in out


def test_parse_date_round_trips_format() -> None:
    for value in ("2024-03-05", "03/05/2024", "3/5/24", "March 5, 2024", "5 Mar 2024", "Mar 5 2024",
                  "Sept. 5, 2024", "5th of March, 2024", "MARCH 05, 2024", "06/2068", "3-2024", "Nov 2067",
                  "March, 2068", "3/69"):  # fmt: skip
        parsed = parse_date(value)
        assert parsed is not None, value
        date, render = parsed
        assert render(date) == value
    assert parse_date("02/30/2024") is None


def test_no_network_access(monkeypatch, pseudonymizer) -> None:
    """Building the engines and analysing e-mail/URL text must not open a connection or download a model.

    (A default ``tldextract.TLDExtract()`` makes two connection attempts here, so this would catch it.)
    """
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access attempted during de-identification")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(spacy.cli, "download", refuse)  # runs pip in a subprocess: sockets would not see it
    deid_nlp.offline_tld_extractor.cache_clear()  # a fresh extractor must load offline too
    fresh = NoteDeidentifier(pseudonymizer)
    out = fresh.deidentify("Mail a.b@example.co.uk, see https://records.example.org/x. MRN: MRN1234567")
    assert out.text.startswith("Mail [EMAIL], see [URL]")
    assert attempts == []


def test_notes_pool_gives_the_single_process_results_in_order() -> None:
    from clinical_pipelines.deid.batch import NotesPool
    from clinical_pipelines.deid.notes import NoteDeidentifier
    from clinical_pipelines.deid.pseudonyms import Pseudonymizer

    key = b"notes pool test secret, 32 bytes or more"
    texts = [f"Ms. Alvarado-{i} (MRN 88{i:05d}) seen 03/0{i % 9 + 1}/2024; call 303-555-01{i:02d}." for i in range(9)]
    single = NoteDeidentifier(Pseudonymizer(key)).deidentify_many(texts)
    with NotesPool(key, workers=2) as pool:
        assert pool.deidentify(texts, batch_size=2) == single
    assert all("Alvarado" not in r.text and "303-555" not in r.text for r in single)


def test_dates_with_a_time_move_by_the_patients_whole_offset(
    deid: NoteDeidentifier, pseudonymizer: Pseudonymizer
) -> None:
    """A date written with its time of day moves by the same offset as a DICOM date+time pair (days and a
    time of day), in the same form; the interval between two of them stays exact; a date alone moves by days."""
    text = ("MRN: 5512087. Specimen collected 2023-11-02 08:15:42.250 and resulted 2023-11-03T17:05Z.\n"
            "Follow-up on 2023-11-20.")  # fmt: skip
    out = deid.deidentify(text).text
    moved = pseudonymizer.shift_datetime(datetime.datetime(2023, 11, 2, 8, 15, 42, 250000), "5512087")
    later = pseudonymizer.shift_datetime(datetime.datetime(2023, 11, 3, 17, 5), "5512087")
    assert f"collected {moved:%Y-%m-%d %H:%M:%S}.250 and" in out
    assert f"resulted {later:%Y-%m-%dT%H:%M}Z." in out
    assert later - moved == datetime.datetime(2023, 11, 3, 17, 5) - datetime.datetime(2023, 11, 2, 8, 15, 42, 250000)
    assert "08:15" not in out and "17:05" not in out
    day = pseudonymizer.shift_date(datetime.date(2023, 11, 20), "5512087")
    assert f"Follow-up on {day.isoformat()}." in out
