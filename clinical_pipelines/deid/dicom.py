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
from collections.abc import Callable
from dataclasses import dataclass, field

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from clinical_pipelines import pydicom_quiet
from clinical_pipelines.deid.codes import CODE_MEANING, is_standard_code_meaning
from clinical_pipelines.deid.dicom_dates import SHIFTING, paired_times, shift_temporal
from clinical_pipelines.deid.dicom_values import (
    cap_age,
    cohort_attributes,
    in_dictionary,
    map_text,
    method_code_item,
    raw_values,
)
from clinical_pipelines.deid.dicom_writer import ITEM_BASE, META_KEPT, write_passthrough
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
)

pydicom_quiet.configure()  # no value read from a file reaches a warning or a log

#: Deeper nesting than any real IOD needs (SR content trees stay well below): refused, not recursed into.
MAX_SEQUENCE_DEPTH = 32
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
        self._method_code_items = [method_code_item(c) for c in self.profile.method_codes()]
        self._cleaned_code_items = [*self._method_code_items, method_code_item(CLEAN_PIXEL_CODE)]

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
            written = write_passthrough(ds, data)
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
        mask = self.policy.pixel_mask(str(raw_values(ds, 0x00080060) or "")) if self.policy.pixel_masks else None
        if mask is None:
            self._refuse_burned_in(ds)
        patient_key = self._patient_key(ds)
        report = DicomDeidReport(patient_id=self.pseudonymizer.patient_id(patient_key))
        report.removed += _drop_trailing(ds)
        # Conditional actions are resolved by the attribute's type in the IOD of the instance's SOP class.
        table = self.profile.for_sop_class(str(raw_values(ds, 0x00080016) or ""))
        report.iod = table.iod or ""
        self._walk(ds, patient_key, report, table)
        cap_age(ds)
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
        sop_instance = raw_values(ds, 0x00080018)
        if meta is not None:
            if isinstance(sop_instance, str):
                meta.MediaStorageSOPInstanceUID = sop_instance
            for tag in list(meta.keys()):
                if tag not in META_KEPT:  # source/sending AE titles, private information, unknown elements
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
        paired = paired_times(ds, actions) if self.shift_dates and not self.policy.keep_time_of_day else set()
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
            elif vr in _TEMPORAL_VRS and self.shift_dates and action in SHIFTING:
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
        if vr == "UN" or not in_dictionary(tag):
            return "X"
        if vr == "PN":
            return "D"
        if content and vr in _CONTENT_TEXT_VRS and tag not in _CODE_TAGS:
            return "C" if content == "C" and self.text_cleaner is not None else "D"
        if vr in _FREE_TEXT_VRS:
            return "C" if self._cleans_descriptors else "D"
        return None

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
        base = getattr(ds, ITEM_BASE, 0)
        report.sequences_walked += 1
        for item in ds[tag].value:
            object.__setattr__(item, ITEM_BASE, None if base is None else base + shift)
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
        value = raw_values(ds, tag)
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
            element.value = map_text(element.value, lambda text: self.text_cleaner(text, patient_key))  # type: ignore[misc]
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
        """Move a DA, TM or DT value by the patient's offset (:mod:`.dicom_dates`); a malformed one refuses
        the instance (``malformed_date`` / ``malformed_time``)."""
        keep = self.policy.keep_time_of_day
        days = self.pseudonymizer.date_shift_days(patient_key)
        seconds = 0 if keep else self.pseudonymizer.time_shift_seconds(patient_key)
        try:
            report.dates_shifted += shift_temporal(ds, tag, vr, actions, days, seconds, keep_time_of_day=keep)
        except TemporalError as exc:
            raise DeidRejected(exc.reason, exc.detail) from None

    def _dummy(self, ds: Dataset, tag: int, vr: str, patient_key: str, report: DicomDeidReport) -> None:
        if vr == "UI":
            self._remap_uid(ds, tag, report)
        else:
            ds[tag] = DataElement(tag, vr, _DUMMY.get(vr))
            report.replaced += 1


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
