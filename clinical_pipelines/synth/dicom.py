"""DICOM Part-10 CT/MR series with realistic, identifier-laden headers (pydicom 3)."""

from __future__ import annotations

import io
from collections.abc import Iterator

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from clinical_pipelines.synth import uids
from clinical_pipelines.synth.canaries import CanaryRecorder
from clinical_pipelines.synth.formats import age_years, dicom_age, dicom_date
from clinical_pipelines.synth.models import SynthFile
from clinical_pipelines.synth.pixels import CT_OFFSET, SeriesPixels
from clinical_pipelines.synth.plan import Clinician, SeriesSpec

PRIVATE_GROUP = 0x0009
PRIVATE_CREATOR = "ACME_CLINICAL 1.0"
SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
#: Retired "Detached Study Management" SOP Class, the classic ReferencedStudySequence class.
STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"

_SCANNERS = {
    "CT": ("ACME Medical Systems", "Aquila 128", "350.0", "1.25"),
    "MR": ("ACME Medical Systems", "Meridian 3T", "230.0", "5.0"),
}


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _ds(value: float) -> str:
    """Format a DS value in at most 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text[:16]


def _physician_sequence(doc: Clinician, institution: str, rec: CanaryRecorder) -> Sequence:
    ident = Dataset()
    ident.PersonIdentificationCodeSequence = Sequence(
        [_code(rec.plant("physician_id", doc.npi, None), "NPI", doc.full_name)]
    )
    rec.plant("physician_name", doc.full_name, None)
    ident.InstitutionName = institution
    return Sequence([ident])


def _patient_module(ds: Dataset, spec: SeriesSpec, rec: CanaryRecorder) -> None:
    p, mrn = spec.patient, spec.patient.mrn
    ds.PatientName = rec.plant("patient_name", p.dicom_name, mrn)
    ds.PatientID = rec.plant("mrn", mrn, mrn)
    ds.IssuerOfPatientID = spec.site.source.upper()
    ds.PatientBirthDate = rec.plant("birth_date", dicom_date(p.birth_date), mrn)
    ds.PatientSex = p.sex
    ssn_item = Dataset()
    ssn_item.PatientID = rec.plant("ssn", p.ssn, mrn)
    ssn_item.IssuerOfPatientID = "US-SSA"
    ssn_item.TypeOfPatientID = "TEXT"
    mrn_item = Dataset()
    mrn_item.PatientID = mrn
    mrn_item.IssuerOfPatientID = spec.site.institution
    mrn_item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([ssn_item, mrn_item])
    age = age_years(p.birth_date, spec.exam.date)
    ds.PatientAge = dicom_age(age)
    if age > 89:
        rec.plant("age_over_89", ds.PatientAge, mrn)
    ds.PatientSize = "1.68" if p.sex == "F" else "1.79"
    ds.PatientWeight = "71.5"
    ds.PatientAddress = rec.plant("address", p.full_address, mrn)
    rec.plant("address", p.address, mrn)
    rec.plant("zip", p.zip, mrn)
    ds.PatientTelephoneNumbers = rec.plant("phone", p.phone, mrn)
    ds.PatientTelecomInformation = rec.plant("email", p.email, mrn)
    age_text = f"{age}-year-old"
    if age > 89:
        rec.plant("age_over_89", age_text, mrn)
    ds.AdditionalPatientHistory = (
        f"{rec.plant('patient_name', p.full_name, mrn)} ({mrn}) is a {age_text} "
        f"{'woman' if p.sex == 'F' else 'man'} referred by Dr. "
        f"{rec.plant('physician_name', spec.exam.referring.full_name, None)}. "
        f"Contact {p.phone}."
    )


def _study_module(ds: Dataset, spec: SeriesSpec, rec: CanaryRecorder) -> None:
    exam, site, mrn = spec.exam, spec.site, spec.patient.mrn
    proto = exam.protocol
    date = rec.plant("date", dicom_date(exam.date), mrn)
    for kw in ("InstanceCreationDate", "StudyDate", "SeriesDate", "AcquisitionDate",
               "ContentDate", "PerformedProcedureStepStartDate"):  # fmt: skip
        setattr(ds, kw, date)
    for kw in ("InstanceCreationTime", "StudyTime", "SeriesTime", "AcquisitionTime",
               "ContentTime", "PerformedProcedureStepStartTime"):  # fmt: skip
        setattr(ds, kw, exam.time)
    ds.AcquisitionDateTime = f"{date}{exam.time}.000000"
    ds.AccessionNumber = rec.plant("accession", exam.accession, mrn)
    ds.InstitutionName = rec.plant("institution", site.institution, None)
    ds.InstitutionAddress = rec.plant("address", site.address, None)
    ds.InstitutionalDepartmentName = "Department of Radiology"
    ds.ReferringPhysicianName = rec.plant("physician_name", exam.referring.dicom_name, None)
    ds.ReferringPhysicianIdentificationSequence = _physician_sequence(exam.referring, site.institution, rec)
    ds.StationName = rec.plant("station_name", site.stations[proto.modality], None)
    ds.StudyDescription = proto.study_description
    ds.ProcedureCodeSequence = Sequence([_code(proto.cpt_code, "CPT4", proto.cpt_meaning)])
    ds.SeriesDescription = proto.series_description
    ds.PerformingPhysicianName = rec.plant("physician_name", spec.performing.dicom_name, None)
    ds.OperatorsName = rec.plant("operator_name", spec.operator.dicom_name, None)
    ds.StudyInstanceUID = rec.plant("uid", spec.study_uid, mrn)
    ds.SeriesInstanceUID = rec.plant("uid", spec.series_uid, mrn)
    ds.StudyID = rec.plant("study_id", spec.study_id, mrn)
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = 1
    ds.PerformedProcedureStepID = rec.plant("procedure_id", spec.step_id, mrn)
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_REFERENCE_CLASS
    study_ref.ReferencedSOPInstanceUID = spec.study_uid
    request = Dataset()
    request.RequestedProcedureID = rec.plant("procedure_id", exam.procedure_id, mrn)
    request.AccessionNumber = exam.accession
    request.RequestedProcedureDescription = proto.study_description
    request.ScheduledProcedureStepID = spec.step_id
    request.ReferencedStudySequence = Sequence([study_ref])
    request.RequestedProcedureCodeSequence = Sequence([_code(proto.cpt_code, "CPT4", proto.cpt_meaning)])
    ds.RequestAttributesSequence = Sequence([request])


def _equipment_and_image(ds: Dataset, spec: SeriesSpec, rec: CanaryRecorder) -> None:
    proto = spec.exam.protocol
    manufacturer, model, fov, thickness = _SCANNERS[proto.modality]
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = rec.plant("device_serial", spec.site.serials[proto.modality], None)
    ds.SoftwareVersions = "SYN 4.2.1"
    ds.ProtocolName = proto.protocol_name
    ds.BodyPartExamined = proto.body_part
    ds.SliceThickness = thickness
    ds.PatientPosition = "HFS"
    if proto.modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        ds.XRayTubeCurrent = 240
        ds.ConvolutionKernel = "STANDARD"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        intercept = -CT_OFFSET
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "SK"
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "12"
        ds.MagneticFieldStrength = "3"
        ds.ImagingFrequency = "127.74"
        ds.WindowCenter, ds.WindowWidth = "450", "900"
        intercept = 0
    ds.RescaleIntercept = str(intercept)
    ds.RescaleSlope = "1"
    ds.FrameOfReferenceUID = rec.plant("uid", spec.frame_uid, spec.patient.mrn)
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(float(fov) / spec.rows), _ds(float(fov) / spec.columns)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1


def _private_block(ds: Dataset, spec: SeriesSpec, rec: CanaryRecorder) -> None:
    p, mrn = spec.patient, spec.patient.mrn
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", rec.plant("patient_name", p.full_name, mrn))
    block.add_new(0x02, "LO", mrn)
    block.add_new(0x03, "DA", dicom_date(p.birth_date))
    block.add_new(0x04, "LT", f"Billing contact {p.full_name}, SSN {p.ssn}, {p.full_address}")


def build_series_header(spec: SeriesSpec, rec: CanaryRecorder) -> Dataset:
    """Build the header shared by all slices of ``spec``, recording every identifier planted.

    Per-slice attributes are filled in by :func:`apply_slice`.
    """
    modality = spec.exam.protocol.modality
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = uids.IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.Modality = modality
    _patient_module(ds, spec, rec)
    _study_module(ds, spec, rec)
    _equipment_and_image(ds, spec, rec)
    _private_block(ds, spec, rec)
    return ds


def apply_slice(ds: Dataset, spec: SeriesSpec, index: int, rec: CanaryRecorder) -> None:
    """Set the per-slice attributes of slice ``index`` (0-based) on a series header."""
    p = spec.patient
    sop_uid = rec.plant("uid", uids.instance_uid(spec.sop_token, index + 1), p.mrn)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = index + 1
    spacing = [float(v) for v in ds.PixelSpacing]
    z = -150.0 + index * float(ds.SliceThickness)
    ds.ImagePositionPatient = [_ds(-spacing[1] * spec.columns / 2), _ds(-spacing[0] * spec.rows / 2), _ds(z)]
    ds.SliceLocation = _ds(z)
    ds.ImageComments = (
        f"Slice {index + 1} of {spec.n_slices} for {p.full_name}, MRN {p.mrn}, accession {spec.exam.accession}"
    )


def encode(ds: Dataset) -> bytes:
    """Serialise ``ds`` as a Part-10 file (preamble, DICM, file meta) and return the bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def record_series(spec: SeriesSpec, rec: CanaryRecorder) -> None:
    """Record the canaries of ``spec`` exactly as :func:`render_series` would, minus pixels."""
    ds = build_series_header(spec, rec)
    for i in range(spec.n_slices):
        apply_slice(ds, spec, i, rec)


def render_series(spec: SeriesSpec, rec: CanaryRecorder, path_prefix: str, first_number: int) -> Iterator[SynthFile]:
    """Yield one Part-10 file per slice, named ``<path_prefix>-<NNNN>.dcm`` from ``first_number``."""
    ds = build_series_header(spec, rec)
    pixels = SeriesPixels(spec.exam.protocol.modality, spec.rows, spec.columns, spec.n_slices,
                          spec.seed)  # fmt: skip
    for i in range(spec.n_slices):
        apply_slice(ds, spec, i, rec)
        ds.PixelData = pixels.slice(i).tobytes()
        yield SynthFile(f"{path_prefix}-{first_number + i:04d}.dcm", encode(ds), "dicom")
