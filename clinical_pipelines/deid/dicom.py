"""De-identify a DICOM instance with the PS3.15 Annex E Basic Profile (plus options).

Every top-level and nested attribute is judged by the compiled Table E.1-1 actions, their
conditional actions resolved by the attribute's type in the instance's IOD (:mod:`.iod`), and what
the table does not name fails closed (:meth:`DicomDeidentifier._action`): tags unknown to the data
dictionary, untyped UN values, overlay planes (no bitmap cleaner: removed whole unless kept) and the
text group are removed, person names and free text replaced, every written text of a Content
Sequence replaced (its codes kept). Private attributes are removed unless their (creator, element)
is on the safe list; UIDs are remapped by keyed hash; with the modified-dates option dates and times
move by the patient's keyed offset (whole days plus a time of day, :mod:`.temporal`); elements after
the pixel data are dropped; Patient ID and Patient's Name become the patient's pseudonym. Pixel data
is copied as bytes, never decoded. Instances that may carry burned-in text are refused (routed to
review), unless the policy gives a pixel mask for their modality (Clean Pixel Data Option,
:mod:`.pixels`).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, get_entry
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from clinical_pipelines import pydicom_quiet
from clinical_pipelines.deid.codes import CODE_MEANING, is_standard_code_meaning
from clinical_pipelines.deid.iod import Path_
from clinical_pipelines.deid.pixels import (
    CLEAN_PIXEL_CODE,
    CLEAN_PIXEL_MEANING,
    PixelCleaningError,
    PixelMask,
    clean_pixels,
)
from clinical_pipelines.deid.profile import DEFAULT_OPTIONS, CompiledProfile, InstanceActions, compile_profile
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.deid.temporal import (
    TemporalError,
    date_time_pairs,
    keep_time_datetime,
    shift_date,
    shift_date_time,
    shift_datetime,
    shift_time,
)

pydicom_quiet.configure()  # no value read from a file reaches a warning or a log

#: Deeper nesting than any real IOD needs (SR content trees stay well below): refused, not recursed into.
MAX_SEQUENCE_DEPTH = 32
_BASE = "_deid_file_offset"  # on walked sequence items: where their elements' positions count from
_DEPTH = "_deid_depth"
PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
# Modalities whose images routinely carry burned-in text (ultrasound, secondary capture, ...).
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XC", "OT", "ES", "GM", "SM", "DOC"})
_TEMPORAL_VRS = {"DA", "DT", "TM"}
_TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "PN", "CS", "AE", "UC", "UR", "AS"}
# Free text by its VR: an attribute of these VRs that Table E.1-1 does not name is still judged.
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
# Text values a person may have written inside a content tree (SR, key objects): all but the codes.
_CONTENT_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "PN"})
# Coded values: identify a concept in a coding scheme, never a person (kept in content trees).
_CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119})
CONTENT_SEQUENCE = 0x0040A730
PIXEL_DATA = 0x7FE00010
_SHIFTING = frozenset("CD")  # the actions that move a date or time under the modified-dates option
_DUMMY = {
    "DA": "19000101", "DT": "19000101000000", "TM": "000000", "PN": "ANONYMIZED", "LO": "ANONYMIZED",
    "SH": "ANONYMIZED", "ST": "ANONYMIZED", "LT": "ANONYMIZED", "UT": "ANONYMIZED", "CS": "ANONYMIZED",
    "AE": "ANONYMIZED", "UC": "ANONYMIZED", "AS": "000Y", "IS": "0", "DS": "0", "US": 0, "SS": 0, "UL": 0,
    "SL": 0, "FL": 0.0, "FD": 0.0, "UI": "2.25.0",
}  # fmt: skip

TextCleaner = Callable[[str, str], str]  # (text, patient key) -> cleaned text


class DeidRejected(Exception):
    """The instance cannot be de-identified safely; carries a quarantine reason (never a value)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class DicomDeidReport:
    """What was done to one instance: counts per action, no values."""

    removed: int = 0
    emptied: int = 0
    replaced: int = 0
    uids_remapped: int = 0
    dates_shifted: int = 0
    cleaned: int = 0
    private_removed: int = 0
    sequences_walked: int = 0
    patient_id: str = ""
    pixels_blanked: int = 0
    iod: str = ""  # IOD whose attribute types resolved the conditional actions ("": unknown, conservative rule)
    actions: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)  # post-de-identification values, for cohorts


@dataclass(frozen=True)
class DicomDeidPolicy:
    """Profile options and the review policy."""

    options: tuple[str, ...] = DEFAULT_OPTIONS
    safe_private: frozenset[tuple[str, int]] = frozenset()  # (private creator, element low byte)
    refuse_burned_in: bool = True
    # Clean Pixel Data Option, per modality ("*": any): instances of a listed modality have the mask's
    # regions blanked instead of being refused for burned-in text (the mask is the review's answer).
    pixel_masks: tuple[tuple[str, PixelMask], ...] = ()
    # With the modified-dates option, times of day move with the dates (one offset with a seconds part).
    # True keeps every time of day (TM, and the time in DT) as it was and moves dates by whole days only:
    # a re-identification risk (date shift known from one study + its clock times match RIS/PACS logs),
    # for users who need clock times (circadian studies) and accept that risk.
    keep_time_of_day: bool = False

    def pixel_mask(self, modality: str) -> PixelMask | None:
        """The mask for instances of ``modality``, if pixel cleaning is asked for them."""
        masks = dict(self.pixel_masks)
        return masks.get(modality.strip().upper(), masks.get("*"))


class DicomDeidentifier:
    """Applies the compiled profile to datasets, with one pseudonymizer (one secret)."""

    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        policy: DicomDeidPolicy | None = None,
        *,
        text_cleaner: TextCleaner | None = None,
    ) -> None:
        self.pseudonymizer = pseudonymizer
        self.policy = policy or DicomDeidPolicy()
        self.profile: CompiledProfile = compile_profile(tuple(sorted(self.policy.options)))
        self.text_cleaner = text_cleaner
        self.shift_dates = "rtnLongModifDatesOpt" in self.policy.options
        self._method_description = self.profile.method_description()
        # Built once and shared: the items are constant, and building Datasets per file is slow.
        self._method_code_items = [_code(c) for c in self.profile.method_codes()]
        self._cleaned_code_items = [*self._method_code_items, _code(CLEAN_PIXEL_CODE)]

    # -- whole files -------------------------------------------------------------------
    def deidentify_bytes(
        self, data: bytes, *, before: Callable[[Dataset], object] | None = None, dataset: Dataset | None = None
    ) -> tuple[bytes, DicomDeidReport]:
        """De-identify a Part 10 file; pixel data bytes are carried over untouched unless the policy cleans them.

        ``before``, when given, is called with the dataset as read, before the profile changes it.
        ``dataset``: pydicom's reading of all of ``data`` with its values still raw, when the caller has
        one (it is then de-identified in place instead of reading ``data`` again).
        """
        try:
            ds = dataset if dataset is not None else pydicom.dcmread(io.BytesIO(data))
        except Exception as exc:  # messages may quote values
            raise DeidRejected("malformed_dicom", f"pydicom could not read the file ({type(exc).__name__})") from None
        try:
            if before is not None:
                before(ds)
            report = self.deidentify_dataset(ds)
        except DeidRejected:
            raise
        except RecursionError:
            raise DeidRejected("sequence_too_deep", "sequences nested too deep to walk") from None
        except Exception as exc:  # a value pydicom cannot convert, an odd VR...: never crash the run
            raise DeidRejected("deid_failed", f"the profile could not be applied ({type(exc).__name__})") from None
        try:
            written = _write_passthrough(ds, data)
            if written is None:  # a transfer syntax the byte-copying writer does not handle
                out = io.BytesIO()
                ds.save_as(out, enforce_file_format=True)
                written = out.getvalue()
        except Exception as exc:
            raise DeidRejected("unwritable_dicom", f"could not write the result ({type(exc).__name__})") from None
        return written, report

    # -- datasets ----------------------------------------------------------------------
    def deidentify_dataset(self, ds: Dataset) -> DicomDeidReport:
        """De-identify ``ds`` in place and stamp the De-identification Method attributes."""
        mask = self.policy.pixel_mask(str(_raw_values(ds, 0x00080060) or "")) if self.policy.pixel_masks else None
        if mask is None:
            self._refuse_burned_in(ds)
        patient_key = self._patient_key(ds)
        report = DicomDeidReport(patient_id=self.pseudonymizer.patient_id(patient_key))
        report.removed += _drop_trailing(ds)
        # Conditional actions are resolved by the attribute's type in the IOD of the instance's SOP class.
        table = self.profile.for_sop_class(str(_raw_values(ds, 0x00080016) or ""))
        report.iod = table.iod or ""
        self._walk(ds, patient_key, report, table)
        _cap_age(ds)
        if mask is not None:
            try:
                report.pixels_blanked = clean_pixels(ds, mask)
            except PixelCleaningError as exc:
                raise DeidRejected("pixel_cleaning_unsupported", str(exc)) from None
        pseudonym = report.patient_id
        ds[PATIENT_ID] = DataElement(PATIENT_ID, "LO", pseudonym)
        ds[PATIENT_NAME] = DataElement(PATIENT_NAME, "PN", pseudonym)
        ds[0x00120062] = DataElement(0x00120062, "CS", "YES")  # Patient Identity Removed
        description = [*self._method_description, CLEAN_PIXEL_MEANING] if mask else self._method_description
        ds[0x00120063] = DataElement(0x00120063, "LO", description)
        codes = self._cleaned_code_items if mask else self._method_code_items
        ds[0x00120064] = DataElement(0x00120064, "SQ", Sequence(codes))
        if self.shift_dates:
            ds[0x00280303] = DataElement(0x00280303, "CS", "MODIFIED")  # Longitudinal Temporal Info Modified
        ds.preamble = b"\x00" * 128  # a preamble can hold anything (TIFF/DICOM hybrids): never carry it over
        meta = getattr(ds, "file_meta", None)
        sop_instance = _raw_values(ds, 0x00080018)
        if meta is not None:
            if isinstance(sop_instance, str):
                meta.MediaStorageSOPInstanceUID = sop_instance
            for tag in list(meta.keys()):
                if tag not in _META_KEPT:  # source/sending AE titles, private information, unknown elements
                    del meta[tag]
        report.attributes = cohort_attributes(ds)
        return report

    def _refuse_burned_in(self, ds: Dataset) -> None:
        if not self.policy.refuse_burned_in:
            return
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        modality = str(ds.get("Modality", "") or "").strip().upper()
        if burned == "YES":
            raise DeidRejected("burned_in_annotation", "BurnedInAnnotation is YES: pixel data needs review")
        if modality in BURNED_IN_MODALITIES and burned != "NO":
            raise DeidRejected("burned_in_annotation", f"modality {modality} routinely carries burned-in text")

    def _patient_key(self, ds: Dataset) -> str:
        element = ds.get(PATIENT_ID)
        value = str(element.value).strip() if element is not None and element.value else ""
        if value:
            return value
        study = str(ds.get("StudyInstanceUID", "") or "")
        return f"no-patient-id:{study}"  # consistent within a study, unlinkable across

    def _walk(
        self,
        ds: Dataset,
        patient_key: str,
        report: DicomDeidReport,
        table: InstanceActions,
        path: Path_ = (),
        content: str = "",
    ) -> None:
        """Apply the instance's actions at ``path`` (tag -> action) to ``ds`` and, recursively, to its items.

        ``content``: inside a Content Sequence, the action for the text a person wrote there ("D" with
        the Basic Profile, "C" with the Clean Structured Content Option); empty elsewhere.
        """
        actions = table.at(path)
        paired = self._paired_times(ds, actions)
        # a code's meaning as the standard gives it was written by no person: kept in content trees
        standard_meaning = bool(content) and CODE_MEANING in ds and is_standard_code_meaning(ds)
        for tag in list(ds.keys()):
            group, element = tag >> 16, tag & 0xFFFF
            if group & 1:
                if self._safe_private(ds, tag, element):
                    continue
                del ds[tag]
                report.private_removed += 1
                continue
            if tag in paired:
                continue  # moved together with its date
            vr = self._vr(ds, tag)
            judged_as = "" if standard_meaning and tag == CODE_MEANING else content
            action = self._action(actions, tag, group, element, vr, judged_as)
            if action is None or action == "K":
                if vr == "SQ":
                    self._walk_sequence(ds, tag, patient_key, report, table, path, content)
                continue
            report.actions[action] = report.actions.get(action, 0) + 1
            # New elements are built from the raw bytes: converting values pydicom would only throw
            # away again costs more than the whole rest of the walk.
            if action == "X":
                del ds[tag]
                report.removed += 1
            elif vr == "SQ":  # D/Z/C/U on a sequence: keep its structure, de-identify inside it
                # (X/Z/U* on Referenced/Source Image Sequence: the UIDs inside are remapped by their own rows)
                if action == "Z":
                    ds[tag] = DataElement(tag, vr, Sequence())
                    report.emptied += 1
                else:
                    inner = action if tag == CONTENT_SEQUENCE else content
                    self._walk_sequence(ds, tag, patient_key, report, table, path, inner)
            elif action == "U":
                self._remap_uid(ds, tag, report)
            elif action == "Z":
                ds[tag] = DataElement(tag, vr, None)  # zero length, whatever the VR
                report.emptied += 1
            elif vr in _TEMPORAL_VRS and self.shift_dates and action in _SHIFTING:
                self._shift_temporal(ds, tag, vr, patient_key, report, actions)
            elif action == "C":
                self._clean(ds, tag, vr, patient_key, report)
            else:  # D
                self._dummy(ds, tag, vr, patient_key, report)

    def _action(self, actions: dict[int, str], tag: int, group: int, element: int, vr: str, content: str) -> str | None:
        """The action for one public attribute: its Table E.1-1 row, else the fail-closed rules.

        Not named by the table: the overlay, curve and text groups follow their wildcard rows; a tag
        the data dictionary does not know (or a value read as UN that it cannot type) is removed; a
        person's name is replaced; free text (LT/ST/UT, and in a content tree every written text
        but codes) is replaced, or cleaned when a text cleaner and the matching option are set.
        """
        action = actions.get(tag)
        if action is not None:
            return action
        wildcard = self._wildcard(group, element, vr)
        if wildcard is not None:
            return wildcard
        if vr == "UN" or not _in_dictionary(tag):
            return "X"
        if vr == "PN":
            return "D"
        if content and vr in _CONTENT_TEXT_VRS and tag not in _CODE_TAGS:
            return "C" if content == "C" and self.text_cleaner is not None else "D"
        if vr in _FREE_TEXT_VRS:
            return "C" if self._cleans_descriptors else "D"
        return None

    def _paired_times(self, ds: Dataset, actions: dict[int, str]) -> set[int]:
        """TM tags of ``ds`` that move together with their date (both present and both shifted)."""
        if not self.shift_dates or self.policy.keep_time_of_day:
            return set()
        pairs = date_time_pairs()
        found: set[int] = set()
        for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
            time_tag = pairs.get(tag)
            if time_tag is None or time_tag not in ds:
                continue
            if actions.get(tag) in _SHIFTING and actions.get(time_tag) in _SHIFTING and _raw_values(ds, tag):
                found.add(time_tag)
        return found

    def _walk_sequence(
        self,
        ds: Dataset,
        tag: int,
        patient_key: str,
        report: DicomDeidReport,
        table: InstanceActions,
        path: Path_,
        content: str,
    ) -> None:
        depth = getattr(ds, _DEPTH, 0) + 1
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidRejected("sequence_too_deep", f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep")
        # pydicom gives the elements of a sequence read from a defined-length value positions relative
        # to that value: note where they start in the file, for the byte-copying writer.
        raw = ds.get_item(tag)
        shift = raw.value_tell if type(raw) is RawDataElement and raw.length != 0xFFFFFFFF else 0  # type: ignore[union-attr]
        base = getattr(ds, _BASE, 0)
        report.sequences_walked += 1
        for item in ds[tag].value:
            object.__setattr__(item, _BASE, None if base is None else base + shift)
            object.__setattr__(item, _DEPTH, depth)
            self._walk(item, patient_key, report, table, (*path, int(tag)), content)

    @staticmethod
    def _vr(ds: Dataset, tag: int) -> str:
        raw = ds.get_item(tag)
        vr = getattr(raw, "VR", None)
        if vr and vr != "UN":
            return str(vr)
        try:  # implicit VR, or a known attribute sent as UN (often a sequence): the dictionary knows
            return str(dictionary_VR(tag))
        except KeyError:
            return str(vr or ds[tag].VR)

    def _wildcard(self, group: int, element: int, vr: str) -> str | None:
        """Curves (50xx), overlays (60xx) and the retired text group (4000) (even groups only)."""
        if 0x5000 <= group <= 0x50FF:
            return self.profile.curves_action
        if 0x6000 <= group <= 0x60FF:
            if self.profile.overlay_data_action != "K":
                # Removed, or "cleaned" with no bitmap cleaner here: the overlay goes whole, as its other
                # attributes alone (rows, type, origin...) would be a non-conformant Overlay Plane module.
                return "X"
            if element == 0x4000:
                return self.profile.overlay_comments_action
            if vr in _CONTENT_TEXT_VRS:  # description (0022), label (1500): free text
                return "C" if self.text_cleaner is not None else "D"
            return None
        if group == 0x4000:
            return "X"  # retired Text group: Arbitrary (0010) and Text Comments (4000) rows, and the rest of it
        return None

    @property
    def _cleans_descriptors(self) -> bool:
        return self.text_cleaner is not None and "cleanDescOpt" in self.policy.options

    def _safe_private(self, ds: Dataset, tag: int, element: int) -> bool:
        """On the safe list: a listed (creator, element) or the creator element of a listed creator."""
        if not self.policy.safe_private:
            return False
        if element < 0x0010:
            return False  # group length and reserved elements
        creator_tag = tag if element < 0x1000 else (tag & 0xFFFF0000) | ((tag & 0xFF00) >> 8)
        creator = ds.get(creator_tag)
        name = str(creator.value).strip() if creator is not None else ""
        if element < 0x1000:
            return name in {c for c, _ in self.policy.safe_private}
        return (name, tag & 0xFF) in self.policy.safe_private

    def _remap_uid(self, ds: Dataset, tag: int, report: DicomDeidReport) -> None:
        value = _raw_values(ds, tag)
        if not value:
            return
        uid = self.pseudonymizer.uid
        ds[tag] = DataElement(tag, "UI", [uid(v) for v in value] if isinstance(value, list) else uid(value))
        report.uids_remapped += 1

    def _clean(self, ds: Dataset, tag: int, vr: str, patient_key: str, report: DicomDeidReport) -> None:
        if vr in _TEMPORAL_VRS:  # C without the modified-dates option (a full-dates profile keeps them as K)
            ds[tag] = DataElement(tag, vr, None)
            report.emptied += 1
        elif vr in _TEXT_VRS and self.text_cleaner is not None and ds[tag].value:
            element = ds[tag]
            element.value = _map_text(element.value, lambda text: self.text_cleaner(text, patient_key))  # type: ignore[misc]
            report.cleaned += 1
        elif vr in _CONTENT_TEXT_VRS and ds[tag].value:  # no cleaner: a dummy, so a Type 1 value stays present
            ds[tag] = DataElement(tag, vr, _DUMMY[vr])
            report.replaced += 1
        else:  # no cleaner for this kind of value: nothing of it may survive
            ds[tag] = DataElement(tag, vr, None)
            report.emptied += 1

    def _shift_temporal(
        self, ds: Dataset, tag: int, vr: str, patient_key: str, report: DicomDeidReport, actions: dict[int, str]
    ) -> None:
        """Move a DA, TM or DT value by the patient's offset; a date takes its paired time along.

        Empty values stay empty; a malformed one refuses the instance (``malformed_date`` / ``malformed_time``).
        """
        value = _raw_values(ds, tag)
        if not value:
            return
        days = self.pseudonymizer.date_shift_days(patient_key)
        seconds = 0 if self.policy.keep_time_of_day else self.pseudonymizer.time_shift_seconds(patient_key)
        time_tag = date_time_pairs().get(tag) if vr == "DA" and seconds else None
        try:
            if time_tag is not None and time_tag in ds and actions.get(time_tag) in _SHIFTING:
                times = _raw_values(ds, time_tag)
                self._shift_pair(ds, tag, time_tag, value, times, days, seconds)
                report.dates_shifted += 1 if times else 0
            elif vr == "DA":
                ds[tag] = DataElement(tag, vr, _each(value, lambda v: shift_date(v, days)))
            elif vr == "TM":
                if self.policy.keep_time_of_day:
                    return
                ds[tag] = DataElement(tag, vr, _each(value, lambda v: shift_time(v, seconds)))
            elif self.policy.keep_time_of_day:
                ds[tag] = DataElement(tag, vr, _each(value, lambda v: keep_time_datetime(v, days)))
            else:
                ds[tag] = DataElement(tag, vr, _each(value, lambda v: shift_datetime(v, days, seconds)))
        except TemporalError as exc:
            raise DeidRejected(exc.reason, exc.detail) from None
        report.dates_shifted += 1

    @staticmethod
    def _shift_pair(ds: Dataset, date_tag: int, time_tag: int, dates: Any, times: Any, days: int, seconds: int) -> None:
        date_list = dates if isinstance(dates, list) else [dates]
        time_list = times if isinstance(times, list) else [times] if times else []
        if len(time_list) != len(date_list):  # no value to pair with: each moves on its own
            ds[date_tag] = DataElement(date_tag, "DA", _each(dates, lambda v: shift_date(v, days)))
            if times:
                ds[time_tag] = DataElement(time_tag, "TM", _each(times, lambda v: shift_time(v, seconds)))
            return
        moved = [
            shift_date_time(d, t, days, seconds) if t.strip() else (shift_date(d, days), t)
            for d, t in zip(date_list, time_list, strict=True)
        ]
        new_dates, new_times = [d for d, _ in moved], [t for _, t in moved]
        ds[date_tag] = DataElement(date_tag, "DA", new_dates if isinstance(dates, list) else new_dates[0])
        ds[time_tag] = DataElement(time_tag, "TM", new_times if isinstance(times, list) else new_times[0])

    def _dummy(self, ds: Dataset, tag: int, vr: str, patient_key: str, report: DicomDeidReport) -> None:
        if vr == "UI":
            self._remap_uid(ds, tag, report)
        else:
            ds[tag] = DataElement(tag, vr, _DUMMY.get(vr))
            report.replaced += 1


# Read from the de-identified dataset only: what the catalog filters cohorts by (DESIGN.md §5).
_COHORT_ATTRIBUTES = {
    "modality": 0x00080060,
    "body_part": 0x00180015,
    "study_date": 0x00080020,
    "patient_age": 0x00101010,
    "patient_sex": 0x00100040,
    "study_uid": 0x0020000D,
    "series_uid": 0x0020000E,
}


def _cap_age(ds: Dataset) -> None:
    """Patient's Age over 89 years becomes 090Y (HIPAA Safe Harbor), as in notes ("90+") and tables."""
    age = _raw_values(ds, 0x00101010)
    if isinstance(age, str) and len(age) == 4 and age[:3].isdigit() and age[3] == "Y" and int(age[:3]) > 89:
        ds[0x00101010] = DataElement(0x00101010, "AS", "090Y")


def cohort_attributes(ds: Dataset) -> dict[str, str]:
    """Non-identifying attributes of a de-identified dataset (modality, body part, shifted study date, age...).

    Absent or empty attributes are left out; multi-valued ones keep their first value.
    """
    found: dict[str, str] = {}
    for name, tag in _COHORT_ATTRIBUTES.items():
        try:
            value = _raw_values(ds, tag)
        except Exception:  # an undecodable value is simply not a cohort attribute
            continue
        if isinstance(value, list):
            value = value[0] if value else None
        if value:
            found[name] = str(value)
    return found


def _raw_values(ds: Dataset, tag: int) -> str | list[str] | None:
    """A text value (UI, DA, DT...) straight from the raw bytes when still unconverted; lists when multi-valued."""
    element = ds.get_item(tag)
    value = element.value if element is not None else None
    if isinstance(value, bytes):
        text = value.decode("latin-1").rstrip("\x00 ")
        parts = [p.strip() for p in text.split("\\")]
        return parts if len(parts) > 1 else parts[0]
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return str(value)


def _code(value: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = _CODE_MEANINGS.get(value, "De-identification")
    return item


_CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    CLEAN_PIXEL_CODE: CLEAN_PIXEL_MEANING,
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}


def _map_text(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [fn(str(v)) for v in value]
    return fn(str(value))


def _each(value: Any, fn: Callable[[str], str]) -> Any:
    """``fn`` applied to a value or to each of several (empty ones stay as they are)."""
    if isinstance(value, list):
        return [fn(v) if v.strip() else v for v in value]
    return fn(value)


@cache
def _in_dictionary(tag: int) -> bool:
    """Whether the data dictionary (repeating groups included) knows ``tag``."""
    try:
        get_entry(tag)
    except KeyError:
        return False
    return True


def _drop_trailing(ds: Dataset) -> int:
    """Remove what follows the Pixel Data of the top-level dataset; returns how many elements went.

    A dataset ends with Pixel Data when it has one (PS3.5 7.1: ascending tag order): what is read after
    it (trailing padding, text pasted after the dataset) was parsed from bytes appended to the file.
    Elements out of tag order in the file are refused (``malformed_dicom``): bytes appended to a file
    without pixel data, whose parse may even have replaced a value read before (same tag).
    """
    positions = sorted(
        (element.value_tell, int(tag)) for tag, element in ds._dict.items() if type(element) is RawDataElement
    )
    last = -1
    for _, tag in positions:
        if last >= PIXEL_DATA:
            break
        if tag < last:
            raise DeidRejected("malformed_dicom", "elements out of tag order (bytes after the end of the dataset?)")
        last = tag
    trailing = [tag for tag in ds._dict if tag > PIXEL_DATA] if PIXEL_DATA in ds._dict else []
    for tag in trailing:
        del ds[tag]
    return len(trailing)


_LITTLE_ENDIAN_SYNTAXES = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # UID -> implicit VR
_LONG_HEADER_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


def _raw_span(element: object, data: bytes, implicit: bool, base: int | None = 0) -> tuple[int, int] | None:
    """Byte range of an element never touched since reading (header included), if it can be copied as is.

    ``base`` is where the element's recorded position counts from (None: unknown, never copied). The
    bytes found there must be the element's own tag, VR, length and value, so a copy is always exactly
    what re-encoding the element would write.
    """
    if type(element) is not RawDataElement or base is None:
        return None
    length, value = element.length, element.value  # type: ignore[attr-defined]
    if length == 0xFFFFFFFF or value is None or len(value) != length:
        return None
    vr = element.VR  # type: ignore[attr-defined]
    tell = base + element.value_tell  # type: ignore[attr-defined]
    header = 8 if implicit or vr not in _LONG_HEADER_VRS else 12
    start, end = tell - header, tell + length
    tag = int(element.tag)  # type: ignore[attr-defined]
    if start < 0 or end > len(data):
        return None
    if implicit:
        expected = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    elif header == 12:
        expected = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, str(vr).encode(), 0, length)
    else:
        expected = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, str(vr).encode(), length)
    if not (data.startswith(expected, start) and data.startswith(value, tell)):  # compared in place, no copy
        return None
    return start, end


_ITEM = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
# File meta elements kept: what reading the file needs, and the writing implementation's identity. The
# others name sending/receiving systems, carry private data, or are unknown: not needed to read the file.
_META_KEPT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})
_META_REQUIRED = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def _write_passthrough(ds: Dataset, data: bytes) -> bytes | None:
    """Serialise ``ds``, copying every run of untouched elements straight from the original bytes.

    Only elements the profile changed go through pydicom's writer; pixel data and everything else
    kept is one slice copy per contiguous run, in nested sequence items too (walked sequences are
    written with undefined lengths, as pydicom's writer does). The preamble is zeroed (it can hold
    anything) and the file meta group is rebuilt. Returns None for transfer syntaxes other than
    little endian implicit/explicit VR, or a file meta lacking a required element (the caller then
    uses pydicom's writer for everything).
    """
    from pydicom.filebase import DicomBytesIO

    data = data if isinstance(data, bytes) else bytes(data)  # compared in place with bytes.startswith
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if syntax not in _LITTLE_ENDIAN_SYNTAXES or ds.original_character_set != ds._character_set:
        return None
    assert meta is not None
    if any(tag not in meta for tag in _META_REQUIRED):
        return None
    implicit = _LITTLE_ENDIAN_SYNTAXES[syntax]
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    _write_elements(fp, meta, data, False, "iso8859", 0, skip_group_length=True)
    group = fp.getvalue()
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    fp.write(b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(group)) + group)
    if not _write_elements(fp, ds, data, implicit, ds.get("SpecificCharacterSet", "iso8859"), 0):
        return None
    return fp.getvalue()


def _write_elements(
    fp: Any,
    ds: Dataset,
    data: bytes,
    implicit: bool,
    encoding: Any,
    base: int | None,
    *,
    skip_group_length: bool = False,
) -> bool:
    """Write ``ds``'s elements in tag order; False when a nested item switches character set.

    ``base``: where the recorded positions of ``ds``'s elements count from in ``data`` (None: unknown).
    """
    view = memoryview(data)
    from pydicom.filewriter import write_data_element

    run: list[int] = []  # [start, end] of the pending run of untouched bytes
    for tag in sorted(ds.keys()):
        if tag.element == 0 and (tag.group > 6 or skip_group_length):
            continue  # group lengths: retired (PS3.5 7.2), or recomputed by the caller
        element = ds.get_item(tag)
        span = _raw_span(element, data, implicit, base)
        if span is not None and run and run[1] == span[0]:
            run[1] = span[1]
            continue
        if run:
            fp.write(view[run[0] : run[1]])
            run = []
        if span is not None:
            run = [span[0], span[1]]
        elif type(element) is DataElement and element.VR == "SQ" and element.value:
            fp.write(struct.pack("<HH", tag.group, tag.element))
            fp.write(struct.pack("<I", 0xFFFFFFFF) if implicit else b"SQ\x00\x00\xff\xff\xff\xff")
            for item in element.value:
                if "SpecificCharacterSet" in item:
                    return False
                fp.write(_ITEM)
                if not _write_elements(fp, item, data, implicit, encoding, getattr(item, _BASE, None)):
                    return False
                fp.write(_ITEM_END)
            fp.write(_SEQUENCE_END)
        else:
            encoded = _encode_ascii(element, implicit) if type(element) is DataElement else None
            if encoded is not None:
                fp.write(encoded)
            else:
                write_data_element(fp, ds[tag], encoding)
    if run:
        fp.write(view[run[0] : run[1]])
    return True


# Text VRs whose ASCII values encode the same in every DICOM character set (the default repertoire).
_ASCII_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)


def _encode_ascii(element: DataElement, implicit: bool) -> bytes | None:
    """The encoded element (header and value) for an ASCII text value, or None to leave it to pydicom.

    The profile writes dozens of such values per file (UIDs, shifted dates, pseudonyms, empties);
    encoding them here costs a fraction of pydicom's general writer.
    """
    vr = element.VR
    if vr not in _ASCII_VRS:
        return None
    value = element._value  # the stored value, without triggering a conversion
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (list, MultiValue)) and all(isinstance(v, str) for v in value):
        text = "\\".join(value)
    else:
        return None
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "
    tag = element.tag
    if implicit:
        header = struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw))
    elif vr in _LONG_HEADER_VRS:
        header = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(raw))
    elif len(raw) > 0xFFFF:
        return None
    else:
        header = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw))
    return header + raw
