"""How the notes engine generalises: address structure, GeoNames places, census names, labels, phone labels written
after the number, escaped line breaks, yearless dates in date positions, ages in words, counties. Real engine, texts
written for these tests (not taken from any evaluation set); each checks both what is removed and what is kept."""

from __future__ import annotations

import datetime
import re

import pytest

from clinical_pipelines.deid import lexicons
from clinical_pipelines.deid.notes import NoteDeidentifier, analysis_view
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.recognizers import parse_date

KEY = b"general-notes-test-key-0123456789abcdef"
MRN = "MRN4417302"


@pytest.fixture(scope="module")
def deid() -> NoteDeidentifier:
    return NoteDeidentifier(Pseudonymizer(KEY))


def _out(deid: NoteDeidentifier, text: str) -> str:
    return deid.deidentify(text, patient_key=MRN).text


def _assert_gone(out: str, *values: str) -> None:
    for value in values:
        for word in value.split():
            if len(word) > 1:
                assert word not in out, (word, out)


def _assert_kept(out: str, *values: str) -> None:
    for value in values:
        assert value in out, (value, out)


# --------------------------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Forward the records to Lindenallee 17\nApt 3\nKleinmachnow\nGermany 14532 please.",
         "Lindenallee 17\nApt 3\nKleinmachnow\nGermany 14532"),
        ("She gave her address as 88 Chemin des Vignes 12, Suite 4, Montbrison, France 42600.",
         "88 Chemin des Vignes 12, Suite 4, Montbrison, France 42600"),
        ("Mailing address: 7 Korppikatu 19, 33240 Pispala, Finland", "7 Korppikatu 19, 33240 Pispala, Finland"),
        ("Son is deployed; his mail goes to PSC 4471, Box 0921\nAPO AE 09613", "PSC 4471, Box 0921\nAPO AE 09613"),
        ("Care package sent to Unit 3309 Box 211\nDPO AP 96520 last week.", "Unit 3309 Box 211\nDPO AP 96520"),
        ("Husband serves aboard USS Kearsarge\nFPO AE 09534", "USS Kearsarge\nFPO AE 09534"),
        ("Resides at 14 Vargas Lane 3, Flat 2B, Oporto", "14 Vargas Lane 3, Flat 2B"),
        ("Lives at Fjellstuveien 8 with her sister.", "Fjellstuveien 8"),
        ("Home: Viale dei Pini 44\n   Suite 12\n   Bracciano\n   Italy",
         "Viale dei Pini 44\n   Suite 12\n   Bracciano"),
    ],
)  # fmt: skip
def test_postal_address_blocks_are_removed_whole(deid, text, address) -> None:
    out = _out(deid, text)
    _assert_gone(out, *[line.strip(" ,") for line in address.replace(",", "\n").split("\n") if line.strip()])


def test_hospital_rooms_are_locations_but_no_address_and_doses_and_scores_are_kept(deid) -> None:
    # Where a patient lay is a location (with a date it places the patient), removed on its own; it is no evidence
    # of a postal address, so the text after it is not taken into an address block.
    text = (
        "Transferred to Room 412, Bed 2 on Unit 6 West, Floor 3. Sent home with Augmentin 875 BID.\n"
        "Lead II. Stage 2. Hunt-Hess grade 3. Tanner stage 4. Bay 7."
    )
    out = _out(deid, text)
    _assert_gone(out, "Room 412", "Bed 2", "Bay 7")
    _assert_kept(out, "Unit 6 West", "Floor 3", "Augmentin 875 BID", "Lead II", "Hunt-Hess grade 3", "Tanner stage 4")
    assert "[ADDRESS]" not in out, out


# --------------------------------------------------------------------------------------------- places


def test_gazetteer_places_in_a_locative_position(deid) -> None:
    out = _out(deid, "Moved from Trondheim in May; grew up near Bratislava. Family visiting from LJUBLJANA.")
    _assert_gone(out, "Trondheim", "Bratislava", "LJUBLJANA")


def test_place_names_that_are_ordinary_words_or_abbreviations_are_kept(deid) -> None:
    # "Mobile", "Normal" and "Reading" are cities in GeoNames and ordinary words in web2; "PRN" is an abbreviation.
    out = _out(deid, "Normal gait. Reading glasses. Mobile with a walker. Oxycodone 5 mg PRN, Tylenol 650 mg.")
    _assert_kept(out, "Normal gait", "Reading glasses", "Mobile with", "PRN, Tylenol")


def test_counties_parishes_and_boroughs(deid) -> None:
    out = _out(deid, "EMS from Ottertail County; prior care in St. Landry Parish and Kodiak Island Borough.")
    _assert_gone(out, "Ottertail", "Landry", "Kodiak")
    assert "[LOCATION]" in out


# --------------------------------------------------------------------------------------------- names


def test_dictionary_names_alone_and_in_full(deid) -> None:
    out = _out(deid, "Spoke with Gwendolyn this morning. Gwendolyn Achterberg will drive. Achterberg, Gwendolyn.")
    _assert_gone(out, "Gwendolyn", "Achterberg")


def test_names_spelt_outside_english(deid) -> None:
    out = _out(deid, "Interpreter: Þórhildur Sigurðardóttir. Visited by Bożena Wróblewska and Søren.")
    _assert_gone(out, "Þórhildur", "Sigurðardóttir", "Bożena", "Wróblewska", "Søren")


@pytest.mark.parametrize("label", ["Decedent", "Informant", "Courier", "Notified", "Legal representative"])
def test_any_label_followed_by_a_dictionary_name(deid, label) -> None:
    out = _out(deid, f"{label}: Hjalmar Abernathy\nTime of call: 14:10")
    _assert_gone(out, "Hjalmar", "Abernathy")
    assert out.startswith(f"{label}: ")


def test_speaker_labels_with_given_names_are_no_headings(deid) -> None:
    out = _out(deid, "Transcript of the family meeting.\nJeremiah: We want her home.\nPlan: hospice referral.")
    _assert_gone(out, "Jeremiah")
    _assert_kept(out, "Plan: hospice referral")


def test_drugs_eponyms_and_headings_with_name_like_words_are_kept(deid) -> None:
    text = (
        "Allegra 180 mg daily. Bruce protocol stage 3. Barrett esophagus on EGD. Guillain-Barré syndrome. "
        "Ménière disease. Bell palsy resolved. Foley catheter removed. Glasgow Coma Scale 14."
    )
    out = _out(deid, text)
    _assert_kept(out, "Allegra 180 mg", "Bruce protocol", "Barrett esophagus", "Guillain-Barré syndrome",
                 "Ménière disease", "Bell palsy", "Foley catheter", "Glasgow Coma Scale")  # fmt: skip


def test_dictionaries_come_from_packages() -> None:
    assert {"gwendolyn", "jeremiah"} <= lexicons.given_names()
    assert "achterberg" not in lexicons.common_words() and "reading" in lexicons.common_words()
    assert {"trondheim", "bratislava"} <= lexicons.place_names()
    assert "germany" in lexicons.country_names() and "germany" not in lexicons.place_names()


# --------------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    "phone",
    ["4471 2290", "+358 40 771 2093", "0611 482 730", "22 417730"],
)
def test_phone_numbers_labelled_after_the_number_or_after_a_call_word(deid, phone) -> None:
    out = _out(deid, f"Daughter's numbers:\n{phone} mobile\nNobody answering at {phone} after 5 pm.")
    assert phone not in out, out


def test_phone_label_joined_by_a_hyphen(deid) -> None:
    out = _out(deid, "Contacts: (312) 555-0147-Home, 77 410 22 93-Work")
    _assert_gone(out, "555-0147", "77 410 22 93")


# --------------------------------------------------------------------------------------------- escaped breaks


def test_escaped_line_breaks_read_as_line_breaks() -> None:
    text = "Name: Ada Quist\\nPhone: 4471 2290\\tfax"
    view = analysis_view(text)
    assert len(view) == len(text) and "\n" in view and "\\" not in view
    assert analysis_view("no escapes") == "no escapes"


def test_escaped_line_breaks_in_an_exported_note(deid) -> None:
    out = _out(deid, "Contact card\\nMarguerite Vasquez-Oyelaran\\n12 Rue des Tanneurs 4\\nSuite 2\\nDinan\\nFrance")
    _assert_gone(out, "Marguerite", "Vasquez-Oyelaran", "Tanneurs", "Dinan")
    assert out.startswith("Contact card\\n")  # the escapes themselves are kept


# --------------------------------------------------------------------------------------------- dates and ages


def test_yearless_dates_in_date_positions_are_shifted(deid) -> None:
    text = "Admitted 3/14, discharged on 3/18. Follow-up 4/2 at 09:30."
    out = _out(deid, text)
    for value in ("3/14", "3/18", "4/2"):
        assert value not in out
    moved = [d for d in out.replace(",", " ").replace(".", " ").split() if "/" in d]
    assert len(moved) == 3 and all(parse_date(d) is not None for d in moved)
    first = parse_date(moved[0])[0]  # type: ignore[index]
    assert (parse_date(moved[1])[0] - first) == datetime.timedelta(days=4)  # type: ignore[index]


def test_a_month_and_year_without_a_day_is_a_date_and_is_shifted(deid) -> None:
    """Month and year are an element of a date (Safe Harbor): removed and shifted in their own format."""
    text = "Colonoscopy 06/2068 was normal. HbA1c 7.2 (4/2069). Seen in Nov 2067. Statin stopped 1/68."
    out = _out(deid, text)
    for value in ("06/2068", "4/2069", "Nov 2067", "1/68"):
        assert value not in out
    shifted = re.findall(r"\b\d{1,2}/(?:\d{4}|\d{2})\b|\b[A-Z][a-z]{2} \d{4}\b", out)
    assert len(shifted) == 4 and all(parse_date(d) is not None for d in shifted), out
    _assert_kept(_out(deid, "Pain 3/10. EF 55/60. Dilution 1/50. GCS 3/15."), "3/10", "55/60", "1/50", "3/15")
    # Shifted by whole months, at least one: a shift of a few days cannot leave the month and year as written.
    for key in (f"MRN{n:07d}" for n in range(40)):
        assert "06/2068" not in deid.deidentify("Colonoscopy 06/2068.", patient_key=key).text, key


def test_fractions_doses_scores_and_blood_pressure_are_no_dates(deid) -> None:
    text = "BP 118/76. Take 1/2 tab nightly. Strength 4/5 on the left. Murmur 3/6. Pain 6/10. GCS 3/15 on arrival."
    out = _out(deid, text)
    _assert_kept(out, "118/76", "1/2 tab", "4/5", "3/6", "6/10", "3/15")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A ninety-four-year-old widow.", "A 90+-year-old widow."),
        ("Patient aged one hundred and two.", "Patient aged 90+."),
        ("He is ninety six years old.", "He is 90+ years old."),
        ("A seventy-year-old man.", "A seventy-year-old man."),
    ],
)
def test_ages_over_89_in_words(deid, text, expected) -> None:
    assert _out(deid, text) == expected


def test_month_day_opening_a_log_entry_is_a_date(deid) -> None:
    out = _out(deid, "Phone log\n3/22: left a message.\n- 3/23 - daughter returned the call.\nRatio 3/4 of usual.")
    assert "3/22" not in out and "3/23" not in out
    assert "3/4 of usual" in out


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("Grievance reference 20914477 filed.", "20914477"),
        ("Claim no. 5530219 was denied.", "5530219"),
        ("Authorization # 77104 expires soon.", "77104"),
        ("Subscriber ID: XJQ40817731", "XJQ40817731"),
    ],
)
def test_ids_after_any_identifier_noun(deid, text, gone) -> None:
    assert gone not in _out(deid, text)


def test_short_numbers_and_clinical_codes_after_nouns_are_kept(deid) -> None:
    out = _out(deid, "Room number 412. CPT code 99213. Case 2 of 3. Reference range 3.5-5.0.")
    _assert_kept(out, "Room number 412", "99213", "Case 2 of 3", "3.5-5.0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient is 97 years of age.", "Patient is 90+ years of age."),
        ("Triage: 92F with dyspnea.", "Triage: 90+F with dyspnea."),
    ],
)
def test_ages_over_89_in_other_written_forms(deid, text, expected) -> None:
    assert _out(deid, text) == expected


def test_surname_comma_given_name_in_capitals(deid) -> None:
    out = _out(deid, "Specimen labelled BRANDT, WINIFRED at the bedside.")
    _assert_gone(out, "BRANDT", "WINIFRED")


def test_month_day_ranges_and_dated_studies(deid) -> None:
    text = "Vancomycin 5/2-5/9, then cefazolin 5/10 through 5/16. CXR 5/3 clear. Dictated 5/17."
    out = _out(deid, text)
    before, after = re.findall(r"\d+/\d+", text), re.findall(r"\d+/\d+", out)
    assert len(before) == len(after) == 6
    assert all(parse_date(a)[0] != parse_date(b)[0] for a, b in zip(before, after, strict=True)), out  # type: ignore[index]


def test_fraction_ranges_and_counts_are_kept(deid) -> None:
    out = _out(deid, "Strength 4-5/5 in the legs. Pain 3-4/10. Lymph nodes 0/12 and 2/14 positive.")
    _assert_kept(out, "4-5/5", "3-4/10", "0/12", "2/14")


def test_month_day_in_a_date_column_of_a_table(deid) -> None:
    text = "| Day | Weight | Intake |\n|---|---|---|\n| 8/14 | 70.1 | 3/4 tray |\n| 8/15 | 69.8 | 1/2 tray |"
    out = _out(deid, text)
    assert "8/14" not in out and "8/15" not in out
    _assert_kept(out, "3/4 tray", "1/2 tray", "70.1")


def test_medicine_names_from_the_drug_dictionary_are_kept(deid) -> None:
    out = _out(deid, "Continue Spiriva and Flonase. Restart Keppra. Metoprolol held. Digoxin level pending.")
    _assert_kept(out, "Spiriva", "Flonase", "Keppra", "Metoprolol", "Digoxin")
    assert "spiriva" in lexicons.drug_names() and "allegra" in lexicons.given_names()


def test_abbreviations_clock_positions_and_graded_eponyms_are_kept(deid) -> None:
    text = "ED TRIAGE: to the ER. Mass at 2 o'clock. Bosniak IIF cyst. Hasson trocar placed. Seen in PACU."
    out = _out(deid, text)
    _assert_kept(out, "ED TRIAGE", "the ER", "2 o'clock", "Bosniak IIF cyst", "Hasson trocar", "PACU")


def test_words_in_other_scripts_are_removed_and_greek_symbols_kept(deid) -> None:
    text = "Started β-blocker; 5 μg daily. Grandson Алексей Морозов visits from Θεσσαλονίκη, Οδός Εγνατίας 12."
    out = _out(deid, text)
    _assert_gone(out, "Алексей", "Морозов", "Θεσσαλονίκη", "Εγνατίας")
    _assert_kept(out, "β-blocker", "5 μg")


@pytest.mark.parametrize(
    ("text", "gone"),
    [("Postcode: 4870, Queensland.", "4870"), ("Mail to Ottawa ON K2P 1L4.", "K2P 1L4"),
     ("Lives near Leeds LS6 2QT.", "LS6 2QT"), ("Sent to Lindauer Str. 9, Kempten", "Lindauer")],
)  # fmt: skip
def test_postcodes_of_other_countries_and_abbreviated_street_types(deid, text, gone) -> None:
    assert gone not in _out(deid, text)


# ------------------------------------------------------------------ names by shape, address and dialogue


@pytest.mark.parametrize(
    ("text", "names", "kept"),
    [
        ("Results discussed with ms. Adaeze Okwuosa by phone.", ["Adaeze Okwuosa"], ["discussed"]),
        ("ECG: QRS 120 ms Normal axis, no ST change.", [], ["120 ms Normal axis"]),
        ("Dear Oluwaseun,\nthank you for referring your mother.", ["Oluwaseun"], ["thank you"]),
        ("Dear Colleague,\nthank you for this referral.", [], ["Dear Colleague"]),
        ("Hi Wojciech, the biopsy is back.", ["Wojciech"], ["biopsy"]),
        ("The patient said to call me Teodora, not Mrs.", ["Teodora"], ["said"]),
        ("Consent witnessed by Ngozi T Abernathy-Obi at the bedside.", ["Ngozi T Abernathy-Obi"], ["bedside"]),
    ],
)
def test_names_addressed_initialled_and_in_lower_case_titles(
    deid: NoteDeidentifier, text: str, names: list[str], kept: list[str]
) -> None:
    out = _out(deid, text)
    _assert_gone(out, *names)
    _assert_kept(out, *kept)


def test_an_initial_between_english_words_is_no_name() -> None:
    from clinical_pipelines.deid.structure import _initialled_names

    text = "Factor V Leiden negative; Vitamin D Deficiency; Type A Dissection; Hepatitis B Surface antigen."
    assert list(_initialled_names(text, lexicons.given_names())) == []
    found = list(_initialled_names("Signed: Czeslawa M Wrobel-Nnadi", lexicons.given_names()))
    assert [("Signed: Czeslawa M Wrobel-Nnadi")[s:e] for s, e, _ in found] == ["Czeslawa M Wrobel-Nnadi"]


def test_speakers_of_a_transcript_are_names_and_headings_are_not(deid: NoteDeidentifier) -> None:
    transcript = (
        "Chat transcript\nOkonjo: I have had the cough for two weeks now.\nNurse: Any fever at night?\n"
        "Okonjo: No fever, but my chest hurts when I cough.\nNurse: Please book a visit."
    )
    out = _out(deid, transcript)
    _assert_gone(out, "Okonjo")
    _assert_kept(out, "Nurse:", "two weeks", "chest hurts")
    note = "Lungs: clear to auscultation bilaterally\nNeuro: alert and oriented, moves all limbs\nMeds: as listed below"
    assert _out(deid, note) == note


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Continue metoprolol tartrate 25 mg PO BID and apixaban 5 mg PO BID.", ["PO BID"]),
        ("PROPOFOL 30 MCG/KG/MIN, NOREPI 0.08 MCG/KG/MIN, TF 1.5 @ 20 ML/H.", ["MCG/KG/MIN", "ML/H"]),
        ("Vaccines given: DTaP-IPV 0.5 mL IM and MMRV 0.5 mL SC; ASQ-3 normal.", ["DTaP-IPV", "MMRV", "ASQ-3"]),
        ("Ambulatory ECG: Holter monitor for 48 hours.", ["Holter monitor"]),
    ],
)
def test_orders_units_and_vaccines_are_not_organisations(deid: NoteDeidentifier, text: str, kept: list[str]) -> None:
    _assert_kept(_out(deid, text), *kept)


@pytest.mark.parametrize(
    ("text", "value", "kept"),
    [
        ("Questions: Dr Ferreira-Lund, pager 4471.", "4471", "Questions"),
        ("Page the on-call resident, beeper #2190, after handover.", "2190", "after handover"),
        ("Her car, licence plate 8KTR 552, is still in the visitor lot.", "8KTR 552", "visitor lot"),
        ("Prescriptions go to the pharmacy on Wexford Avenue near the station.", "Wexford Avenue", "near the station"),
        ("Transferred from Brightwater Manor Nursing & Rehab by ambulance.", "Brightwater Manor Nursing & Rehab",
         "ambulance"),
    ],
)
def test_pagers_plates_streets_without_numbers_and_care_homes(
    deid: NoteDeidentifier, text: str, value: str, kept: str
) -> None:
    out = _out(deid, text)
    _assert_gone(out, value)
    _assert_kept(out, kept)


def test_yearless_dates_before_a_clock_word_are_dates_and_scores_are_not(deid: NoteDeidentifier) -> None:
    out = _out(deid, "Apixaban last given 6/8 PM; strength 5/5 in both legs.")
    assert "6/8" not in out, out
    _assert_kept(out, "strength 5/5")
    table = "| Drug | Last dose |\n|---|---|\n| apixaban 2.5 mg | 6/8 |\n| lisinopril 20 mg | 6/7 |"
    out = _out(deid, table)
    assert "6/8" not in out and "6/7" not in out, out
    _assert_kept(out, "apixaban 2.5 mg", "Last dose")


# --------------------------------------------------- words no dictionary knows, ages said of people, lists of people


def test_a_word_no_dictionary_knows_is_a_name_unless_it_is_vocabulary(deid: NoteDeidentifier) -> None:
    text = (
        "Discussed the plan with Tchaikovskaya-Brandt and Oyelowo; per Zubrzycki the margins are clear. "
        "Cultures grew Pseudomonas aeruginosa and Enterobacter cloacae. Cholangiogram was normal. "
        "The family is Norwegian and speaks English. It's fine, they're coming."
    )
    out = _out(deid, text)
    _assert_gone(out, "Tchaikovskaya-Brandt", "Oyelowo", "Zubrzycki")
    # "Norwegian" is left to spaCy: Presidio's defaults remove a nationality (NRP), and ours are never fewer
    _assert_kept(out, "Pseudomonas aeruginosa", "Enterobacter cloacae", "Cholangiogram", "English",
                 "It's fine, they're coming")  # fmt: skip


def test_unknown_words_in_a_dicom_value_read_alone_are_no_finding() -> None:
    from presidio_analyzer import RecognizerResult

    from clinical_pipelines.deid.residual import residual_entities
    from clinical_pipelines.deid.structure import UNKNOWN_WORD_RECOGNIZER

    meta = {RecognizerResult.RECOGNIZER_NAME_KEY: UNKNOWN_WORD_RECOGNIZER}
    guess = RecognizerResult("PERSON", 0, 8, 0.5, recognition_metadata=meta)
    assert residual_entities("Aquiloxa Prime scanner", [guess], ner_persons=True, in_context=False) == {}
    found = residual_entities("Aquiloxa said hello", [guess], ner_persons=True, in_context=True)
    assert found == {"presidio:PERSON": 1}


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("Her grandmother, who is ninety-two, lives with them.", "ninety-two"),
        ("His mother is 99 and still drives.", "99"),
        ("Her sister died at 96 in this hospital.", "96"),
        ("Patient: Amadou Diallo, 94 years, retired teacher.", "94"),
        ("She wants to celebrate her 100th birthday at home.", "100th"),
    ],
)
def test_ages_over_89_said_of_people(deid: NoteDeidentifier, text: str, age: str) -> None:
    out = _out(deid, text)
    assert age not in out and "90+" in out, out


def test_numbers_that_are_measurements_are_no_ages(deid: NoteDeidentifier) -> None:
    text = (
        "SpO2 at 93% on room air; HR 96 bpm; glucose 101; she walked for ninety minutes; "
        "married for 95 years of joy."
    )
    out = _out(deid, text)
    _assert_kept(out, "93%", "96 bpm", "glucose 101", "ninety minutes")


@pytest.mark.parametrize(
    ("text", "value", "kept"),
    [
        ("The GP was sent an update on 14/11 by fax.", "14/11", "by fax"),
        ("She fell again on the 16th in the bathroom.", "16th", "in the bathroom"),
        ("Hospital no.: NGI 660 3197, seen today.", "660 3197", "seen today"),
        ("Faulty pump serial SN 7731-BX-99120 was changed.", "7731-BX-99120", "was changed"),
        ("Call her colleague on 555-0186 after six.", "555-0186", "after six"),
        ("Flat 2, 9 Kilbride Terrace\nDunmarra\nCo. Ardloe\nA93 KX72", "Flat 2 Co. Ardloe A93 KX72", "\n"),
        ("Linwood Clinic, Level 2, 450 Garnet Road, Eastvale", "Linwood Level 2, 450 Garnet Road", "[FACILITY], "),
    ],
)
def test_day_first_dates_days_alone_spaced_ids_local_phones_and_irish_addresses(
    deid: NoteDeidentifier, text: str, value: str, kept: str
) -> None:
    out = _out(deid, text)
    _assert_gone(out, value)
    _assert_kept(out, kept)


def test_on_the_2nd_day_is_no_date(deid: NoteDeidentifier) -> None:
    _assert_kept(_out(deid, "Fever settled on the 2nd day of antibiotics."), "on the 2nd day")


def test_people_listed_with_a_name_are_names(deid: NoteDeidentifier) -> None:
    out = _out(deid, "Aides Amber, Precious and Sunny Oduya rotate mornings. Seen by Dr. Ruiz and Mr. Obi.")
    _assert_gone(out, "Amber", "Precious", "Sunny Oduya", "Ruiz", "Obi")
    _assert_kept(out, "Dr.", "Mr.", "rotate mornings")


@pytest.mark.parametrize(
    "phrase",
    ["Berg Balance Scale 36/56", "Young Mania Rating Scale 28", "Zimmer frame", "Hoyer lift", "Cheyne-Stokes breathing",
     "Klebsiella pneumoniae", "BP 118/64", "Apgar 8"],
)  # fmt: skip
def test_eponymous_scales_devices_microbes_and_measurements_are_kept(deid: NoteDeidentifier, phrase: str) -> None:
    _assert_kept(_out(deid, f"Today: {phrase} noted by the team."), phrase)
