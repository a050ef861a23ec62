"""De-identified DICOM stays as conformant as its input: conditional actions resolved by IOD attribute type.

The IOD type table shipped under ``deid/data/`` is cross-checked against the standard's tables as
highdicom ships them (a test dependency), and an independent validator (``dciodvfy`` from Debian's
dicom3tools) is run on inputs and outputs: no error kind may appear in an output that its input did
not have.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from clinical_pipelines.deid.dicom import DeidRejected, DicomDeidentifier, DicomDeidPolicy
from clinical_pipelines.deid.iod import TABLE_FILE, build_table, iod_types, resolve, table_info
from clinical_pipelines.deid.profile import DEFAULT_OPTIONS, compile_profile, table_rows
from clinical_pipelines.deid.pseudonyms import Pseudonymizer
from clinical_pipelines.synth import SynthCorpus

KEY = b"a test de-identification secret, 32+ bytes long"
CT = "1.2.840.10008.5.1.4.1.1.2"
RT_PHYSICIAN_INTENT = "1.2.840.10008.5.1.4.1.1.481.10"
REFERENCED_STUDY = 0x00081110


def _highdicom_standard() -> Path:
    spec = importlib.util.find_spec("highdicom")  # located, not imported
    assert spec is not None and spec.submodule_search_locations, "highdicom is a test dependency"
    return Path(next(iter(spec.submodule_search_locations))) / "_standard"


def _saved(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


# -- the shipped table -------------------------------------------------------------------------------
def test_shipped_table_is_what_the_standards_tables_give() -> None:
    shipped = json.loads((Path(__file__).parents[1] / "clinical_pipelines/deid" / TABLE_FILE).read_text())
    info = table_info()
    assert info["standard_edition"] and "MIT" in info["licence"] and "innolitics" in info["source"]
    rebuilt = build_table(_highdicom_standard(), table_rows(), source=info["source"], edition=info["standard_edition"])
    assert rebuilt == shipped


def test_shipped_types_match_highdicoms_module_tables() -> None:
    """Read highdicom's raw files directly (not through the generator): every type the shipped table
    gives is the strongest type the raw module tables give for that keyword path."""
    from pydicom.datadict import keyword_for_tag

    standard = _highdicom_standard()
    raw = json.loads((standard / "module_attribute_map.json").read_text())
    shipped = json.loads((Path(__file__).parents[1] / "clinical_pipelines/deid" / TABLE_FILE).read_text())
    order = ["3", "2C", "2", "1C", "1"]
    checked = 0
    for module, entries in shipped["modules"].items():
        by_path: dict[str, list[str]] = {}
        for attribute in raw[module]:
            by_path.setdefault("/".join([*attribute["path"], attribute["keyword"]]), []).append(attribute["type"])
        for key, kind in entries.items():
            path = "/".join(keyword_for_tag(int(t, 16)) for t in key.split("/"))
            assert kind == max((t for t in by_path[path] if t in order), key=order.index), (module, path)
            checked += 1
    assert checked > 1000
    assert json.loads((standard / "sop_class_iod_map.json").read_text()) == shipped["sop_classes"]


def test_known_types_from_part_3() -> None:
    ct = iod_types(CT)
    assert ct is not None and ct.iod == "ct-image"
    assert ct.type_of((REFERENCED_STUDY,)) == "3"  # General Study
    assert ct.type_of((0x00400275, REFERENCED_STUDY)) == "3"  # Request Attributes Sequence item
    assert ct.type_of((0x00100010,)) == "2"  # Patient's Name
    assert ct.type_of((0x00102297,)) == "2C"  # Responsible Person (veterinary patients)
    assert ct.type_of((0x00081140,)) == "3"  # Referenced Image Sequence in General Image
    # A deeper path than the table lists is looked up by its ending (recursive content trees).
    assert ct.type_of((0x0040A730, 0x0040A730, 0x00400275, REFERENCED_STUDY)) == "3"
    assert ct.type_of((0x0040A730, 0x00080000 | 0x1115, REFERENCED_STUDY)) is None
    assert iod_types("1.2.3.4.5") is None


@pytest.mark.parametrize(
    ("action", "kind", "sequence", "expected"),
    [
        ("X/Z", "3", True, "X"),  # Referenced Study Sequence, Type 3: removed, never left with zero items
        ("X/Z", "2", True, "Z"),
        ("X/Z", "1", True, "D"),  # Type 1 sequence: kept, de-identified inside
        ("X/D", "3", False, "X"),
        ("X/D", "2", False, "D"),
        ("X/D", "1C", False, "D"),
        ("Z/D", "2", False, "Z"),
        ("Z/D", "1", False, "D"),
        ("Z/D", "3", False, "X"),
        ("X/Z/D", "2C", False, "Z"),
        ("X/Z/D", "1", False, "D"),
        ("X/Z/D", None, False, "X"),  # not part of the IOD
        ("X/Z/U*", "3", True, "U"),
        ("X/Z/U*", "1", True, "U"),
        ("X", "2C", False, "D"),  # Responsible Person for a veterinary patient: kept as a dummy
        ("X", "1C", False, "D"),
        ("X", "2", True, "Z"),  # a Type 2 sequence may be empty: its items are not kept
        ("X", "1", True, "D"),  # a Type 1 sequence keeps its items, de-identified inside
        ("X", "3", False, "X"),
        ("X", None, False, "X"),
        ("Z", "3", True, "X"),  # an empty Type 3 sequence breaks "one or more items"
        ("Z", "3", False, "Z"),
        ("Z", "1", False, "D"),
        ("Z", "2", True, "Z"),
        ("D", "3", False, "D"),
        ("K", "1", False, "K"),
        ("C", "1", False, "C"),
        ("U", None, False, "U"),
    ],
)
def test_resolution_by_attribute_type(action: str, kind: str | None, sequence: bool, expected: str) -> None:
    assert resolve(action, kind, sequence=sequence) == expected


def test_instance_actions_depend_on_the_sop_class_and_are_cached() -> None:
    profile = compile_profile()
    ct = profile.for_sop_class(CT)
    assert ct.iod == "ct-image" and ct.at() is ct.at(())
    assert ct.at()[REFERENCED_STUDY] == "X"
    assert ct.at()[0x00102297] == "D"  # Responsible Person (X, Type 2C): a dummy
    assert ct.at()[0x00100010] == "Z" and ct.at()[0x00080020] == "C"  # unconditional actions and options stay
    unknown = profile.for_sop_class("1.2.3.4.5")
    assert unknown.iod is None and unknown.at() is profile.actions  # conservative fallback
    assert profile.actions[REFERENCED_STUDY] == "Z"
    assert profile.for_sop_class(CT) is ct


# -- the engine ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_files() -> list[bytes]:
    corpus = SynthCorpus(17, n_patients=3, slices_per_series=2, rows=32, columns=32)
    return [f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom"]


def test_type_3_sequences_are_removed_not_left_empty(synth_files: list[bytes]) -> None:
    deid = DicomDeidentifier(Pseudonymizer(KEY))
    checked = 0
    for data in synth_files:
        ds = _read(data)
        ds.ReferencedStudySequence = Sequence([Dataset()])
        ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
        out = _read(deid.deidentify_bytes(_saved(ds))[0])
        assert "ReferencedStudySequence" not in out
        for element in out.iterall():
            if element.VR == "SQ" and element.tag == REFERENCED_STUDY:
                raise AssertionError("a nested Referenced Study Sequence was kept")
        checked += 1
    assert checked >= 4


def test_unknown_sop_class_keeps_the_conservative_rule(synth_files: list[bytes]) -> None:
    ds = _read(synth_files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.99.1"
    ds.ReferencedStudySequence = Sequence([Dataset()])
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    out_bytes, report = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(_saved(ds))
    assert len(_read(out_bytes).ReferencedStudySequence) == 0  # X/Z -> Z without the IOD
    assert report.iod == ""  # and the report says the conservative rule was used
    assert DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(synth_files[0])[1].iod == "ct-image"


def _veterinary(ds: Dataset) -> Dataset:
    ds.PatientSpeciesDescription = "Canis lupus familiaris"
    ds.PatientBreedDescription = "Beagle"
    ds.PatientBreedCodeSequence = Sequence()
    ds.BreedRegistrationSequence = Sequence()
    ds.ResponsiblePerson = "Owner^Jane^Q"
    ds.ResponsiblePersonRole = "OWNER"
    ds.ResponsibleOrganization = "Happy Paws Veterinary Clinic"
    return ds


def test_required_conditional_attributes_keep_their_dummy_form(synth_files: list[bytes]) -> None:
    """Responsible Person / Organization (Type 2C, required for an animal; X in Table E.1-1): kept as dummies,
    never removed (Responsible Person Role, kept, is required only while Responsible Person has a value)."""
    out_bytes, _ = DicomDeidentifier(Pseudonymizer(KEY)).deidentify_bytes(_saved(_veterinary(_read(synth_files[0]))))
    out = _read(out_bytes)
    assert str(out.ResponsiblePerson) == "ANONYMIZED" and out.ResponsibleOrganization == "ANONYMIZED"
    assert b"Jane" not in out_bytes and b"Happy Paws" not in out_bytes


def test_type_1_sequence_with_a_removing_action_keeps_its_items_de_identified(synth_files: list[bytes]) -> None:
    """RT Physician Intent: Referenced Study Sequence (X/Z) is Type 1 inside the intent's input instances."""
    ds = _read(synth_files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = RT_PHYSICIAN_INTENT
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8"
    inputs = Dataset()
    inputs.ReferencedStudySequence = Sequence([ref])
    intent = Dataset()
    intent.RTPhysicianIntentInputInstanceSequence = Sequence([inputs])
    ds.RTPhysicianIntentSequence = Sequence([intent])
    ds.ReferencedStudySequence = Sequence([ref])  # Type 3 at the top level of the same instance
    pseudonymizer = Pseudonymizer(KEY)
    out = _read(DicomDeidentifier(pseudonymizer).deidentify_bytes(_saved(ds))[0])
    assert "ReferencedStudySequence" not in out
    kept = out.RTPhysicianIntentSequence[0].RTPhysicianIntentInputInstanceSequence[0].ReferencedStudySequence
    assert len(kept) == 1 and kept[0].ReferencedSOPInstanceUID == pseudonymizer.uid("1.2.3.4.5.6.7.8")


# -- an independent validator: dciodvfy ---------------------------------------------------------------
_INPUT_KINDS: dict[bytes, set[str]] = {}
_UNREADABLE = re.compile(r"read failed|Seek failed|Tags out of order")


def _error_kind(line: str) -> str:
    """A dciodvfy error message without its values: UIDs, numbers, quoted values and characters."""
    kind = re.sub(r"\s+", " ", line.strip())
    kind = re.sub(r"\]\s*=\s*<[^<>]*>", "] = <>", kind)
    kind = re.sub(r'"[^"]*"', '""', kind)
    kind = re.sub(r"'.'\s*\(0x[0-9a-fA-F]+\)", "C", kind)
    kind = re.sub(r"(?<!Type )\b\d+(\.\d+)*\b", "N", kind)
    return kind


def _dciodvfy(tool: str, data: bytes, folder: Path) -> set[str]:
    path = folder / "instance.dcm"
    path.write_bytes(data)
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, errors="replace")
    return {_error_kind(line) for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


def _third_party_files() -> list[tuple[str, bytes]]:
    # pydicom's bundled files, read from the package folder (get_testdata_files() would try the network for
    # its external files), and pydicom-data's, found by its entry point.
    folders = [Path(pydicom.__file__).parent / "data" / "test_files"]
    folders += [Path(e.load()().data_path) for e in entry_points(group="pydicom.data.external_sources")]
    assert len(folders) == 2, "pydicom-data is a test dependency"
    files = []
    for folder in folders:
        for path in sorted(folder.glob("*.dcm")):
            if path.stat().st_size < 3_000_000:  # the large ones only add time
                files.append((path.name, path.read_bytes()))
    return files


@pytest.mark.parametrize(
    "options",
    [
        DEFAULT_OPTIONS,
        (),
        ("cleanGraphOpt", "cleanStructContOpt", "rtnDevIdOpt", "rtnInstIdOpt", "rtnLongFullDatesOpt"),
    ],
    ids=["default", "basic", "retain-and-clean"],
)
def test_dciodvfy_finds_no_error_kind_in_an_output_that_its_input_did_not_have(
    synth_files: list[bytes], options: tuple[str, ...]
) -> None:
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy (Debian dicom3tools) is a test dependency: `make test` installs it"
    samples = [(f"synth-{i}", data) for i, data in enumerate(synth_files)] + _third_party_files()
    # Veterinary variants of readable files: Responsible Person / Organization required (Type 2C).
    for name, data in list(samples[:2]) + [s for s in samples if s[0] == "CT_small.dcm"]:
        samples.append((f"veterinary-{name}", _saved(_veterinary(_read(data)))))
    # Burned-in text review is a pixel policy: off here, so that ultrasound, secondary capture... are compared too.
    deid = DicomDeidentifier(Pseudonymizer(KEY), DicomDeidPolicy(refuse_burned_in=False, options=options))
    introduced: dict[str, list[str]] = {}
    compared = unreadable = refused = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, data in samples:
            try:
                out, _ = deid.deidentify_bytes(data)
            except DeidRejected:
                refused += 1
                continue
            digest = hashlib.sha256(data).digest()
            if digest not in _INPUT_KINDS:  # inputs are the same for every set of options
                _INPUT_KINDS[digest] = _dciodvfy(tool, data, folder)
            before = _INPUT_KINDS[digest]
            if any(_UNREADABLE.search(kind) for kind in before):
                unreadable += 1  # the validator cannot see the whole input: nothing to compare against
                continue
            for kind in sorted(_dciodvfy(tool, out, folder) - before):
                introduced.setdefault(kind, []).append(name)
            compared += 1
    assert introduced == {}
    assert compared >= 120 and refused + unreadable < len(samples) / 5


def test_the_comparison_sees_an_empty_type_3_sequence(synth_files: list[bytes]) -> None:
    """What the blanket rule (X/Z -> Z) wrote is an introduced error kind: the comparison can fail."""
    tool = shutil.which("dciodvfy")
    assert tool, "dciodvfy (Debian dicom3tools) is a test dependency: `make test` installs it"
    ds = _read(synth_files[0])
    assert len(ds.RequestAttributesSequence[0].ReferencedStudySequence) == 1
    emptied = _read(synth_files[0])
    emptied.RequestAttributesSequence[0].ReferencedStudySequence = Sequence()
    with tempfile.TemporaryDirectory() as tmp:
        introduced = _dciodvfy(tool, _saved(emptied), Path(tmp)) - _dciodvfy(tool, _saved(ds), Path(tmp))
    assert any("ReferencedStudySequence" in kind for kind in introduced)


def test_the_runtime_does_not_import_highdicom(synth_files: list[bytes], tmp_path: Path) -> None:
    (tmp_path / "in.dcm").write_bytes(synth_files[0])
    code = (
        "import sys; from pathlib import Path\n"
        "from clinical_pipelines.deid.dicom import DicomDeidentifier\n"
        "from clinical_pipelines.deid.pseudonyms import Pseudonymizer\n"
        f"DicomDeidentifier(Pseudonymizer(b'{KEY.decode()}')).deidentify_bytes(Path(sys.argv[1]).read_bytes())\n"
        "assert not [m for m in sys.modules if m.startswith('highdicom')], 'highdicom imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.dcm")], check=True, timeout=120)
