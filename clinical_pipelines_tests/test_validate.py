"""Validated stage: real parsing, GX suites, per-item quarantine, critical stops, and no PHI in results."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from clinical_pipelines.definitions import build_definitions
from clinical_pipelines.defs.validate.gate import ValidationGateClosed, require_validation_passed, validation_passed
from clinical_pipelines.landing.writer import write_drop
from clinical_pipelines.raw.ingest import DropIngestor
from clinical_pipelines.settings import Settings
from clinical_pipelines.storage import ObjectStore, read_all
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.synth import SynthCorpus
from clinical_pipelines.validate.dicom import ParseFailure, parse_dicom, read_whole
from clinical_pipelines.validate.engine import HEADER_PREFIX_BYTES, DropValidator, read_validated_record
from clinical_pipelines.validate.items import check_dicom
from clinical_pipelines.validate.notes import parse_note
from clinical_pipelines.validate.tables import parse_table
from clinical_pipelines_tests.corpus import files_under, find_planted, small_corpus


def corpus_files(modality: str) -> dict[str, bytes]:
    drops, _ = small_corpus()
    return {f.path: f.data for d in drops for f in d.files if f.modality == modality}


def dicom_variant(data: bytes, **changes: object) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    for name, value in changes.items():
        if value is None:
            delattr(ds, name)
        else:
            setattr(ds, name, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def reason(result: object) -> str | None:
    return result.reason if isinstance(result, ParseFailure) else None


# -- parsers ------------------------------------------------------------------------------
def test_dicom_parser_accepts_good_files_and_names_each_defect() -> None:
    good = next(iter(corpus_files("dicom").values()))
    header = parse_dicom(good)
    assert isinstance(header, dict) and header["rows"] == 64 and header["modality"] in ("CT", "MR")
    assert reason(parse_dicom(b"plain text, not dicom")) == "not_dicom"
    for cut in (300, 1003, len(good) // 2, len(good) - 100):  # (a cut on an element boundary is a valid file)
        assert reason(parse_dicom(good[:cut])) == "truncated_dicom", cut
    assert reason(parse_dicom(dicom_variant(good, PixelData=None))) == "missing_pixel_data"
    ds = pydicom.dcmread(io.BytesIO(good))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 a JPEG frame would be here \xff\xd9"])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert reason(parse_dicom(out.getvalue())) == "unsupported_transfer_syntax"
    assert reason(parse_dicom(dicom_variant(good, Rows=65))) == "pixel_length_mismatch"


def _waveform() -> bytes:
    """pydicom's own 12-lead ECG waveform file: no Pixel Data (as its IOD says), a header of 291 KB."""
    return Path(get_testdata_file("waveform_ecg.dcm")).read_bytes()


def test_non_image_storage_classes_need_no_pixel_data_and_a_long_header_is_read_whole() -> None:
    good = next(iter(corpus_files("dicom").values()))
    secondary = dicom_variant(good, PixelData=None, SOPClassUID="1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture Image
    assert reason(parse_dicom(secondary)) == "missing_pixel_data"
    waveform = _waveform()
    assert isinstance(parse_dicom(waveform), dict)
    # Its header runs past the prefix the pipeline reads first, and the prefix cuts a sequence item (pydicom
    # raises on it): that reads as a cut header, so the caller judges the whole file, not as malformed.
    assert len(waveform) > 2 * HEADER_PREFIX_BYTES
    assert reason(parse_dicom(waveform[:HEADER_PREFIX_BYTES], size=len(waveform))) == "truncated_dicom"


def test_a_dataset_read_once_gets_the_verdict_of_reading_the_file() -> None:
    good = next(iter(corpus_files("dicom").values()))
    ds = pydicom.dcmread(io.BytesIO(good))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    deflated = io.BytesIO()
    ds.save_as(deflated, enforce_file_format=True)
    cases = {
        "good": good,
        "not dicom": b"plain text, not dicom",
        "truncated": good[: len(good) // 2],
        "no pixels": dicom_variant(good, PixelData=None),
        "wrong geometry": dicom_variant(good, Rows=65),
        "no modality": dicom_variant(good, Modality=None),
        "deflated": deflated.getvalue(),
        "waveform": _waveform(),
    }
    verdicts = set()
    for name, data in cases.items():
        dataset = read_whole(data)
        if name != "truncated":  # (pydicom reads a cut pixel value as a short one)
            assert (dataset is None) == (name in ("not dicom", "deflated")), name
        raw_before = None if dataset is None else dict(dataset._dict)
        once, twice = check_dicom(data, dataset=dataset), check_dicom(data)
        assert once == twice, name
        verdicts.add(reason(once))
        if dataset is not None:  # judged without converting a value: the byte-copying writer still copies them
            assert dataset._dict == raw_before, name
    assert len(verdicts) >= 6  # the cases reach different verdicts: the comparison is not vacuous


def test_note_and_table_parsers_name_each_defect() -> None:
    assert isinstance(parse_note(b"Patient seen today; stable. Follow up in two weeks."), dict)
    assert reason(parse_note(b"")) == "empty_note"
    assert reason(parse_note(b"  \n\t ")) == "empty_note"
    assert reason(parse_note(b"\x89PNG\r\n\x1a\n\x00\x00")) == "binary_note"
    assert reason(parse_note("Röntgen".encode("latin-1"))) == "not_utf8"
    labs = corpus_files("tabular")["tabular/labs.csv"]
    parsed = parse_table(labs)
    assert not isinstance(parsed, ParseFailure) and parsed.schema.name == "labs"
    assert str(parsed.frame["collected_at"].dtype).startswith("datetime64")
    assert reason(parse_table(labs.replace(b",", b";"))) == "wrong_delimiter"
    assert reason(parse_table(labs.replace(b"test_code", b"tst"))) == "missing_columns"
    assert reason(parse_table("mrn,patient_name\nMRN1,José\n".encode("latin-1"))) == "bad_encoding"
    assert reason(parse_table(b"a,b,c\n1,2,3\n")) == "unknown_table_schema"


# -- the engine over an ingested drop ------------------------------------------------------
def ingest(
    store: ObjectStore,
    keyring: KeyRing,
    drop_id: str,
    files: dict[str, bytes],
    modalities: dict[str, str] | None = None,
) -> None:
    write_drop(store, "src", drop_id, files, modalities=modalities)
    report = DropIngestor(store, keyring).ingest("src", drop_id)
    assert not report.quarantined, report.quarantined_by_reason()


def test_good_drop_passes_every_suite(store: ObjectStore, keyring: KeyRing) -> None:
    drops, _ = small_corpus()
    files = {f.path: f.data for d in drops for f in d.files}
    ingest(store, keyring, "good", files)
    validator = DropValidator(store, keyring)
    for modality in ("dicom", "notes", "tabular"):
        report = validator.validate("src", "good", modality)
        assert report.passed, (modality, report.critical_failures)
        assert report.quarantined == []
        assert all(o.success for o in report.outcomes), [o.name for o in report.outcomes if not o.success]
        assert len(report.passed_items) == report.items_total > 0
        record = read_validated_record(store, keyring, modality, "src", "good")
        assert record["passed"] and sorted(record["items"]) == sorted(report.passed_items)
    tables = validator.validate("src", "good", "tabular").tables
    assert {t.kind for t in tables} == {"labs", "outcomes"} and all(t.rows_rejected == 0 for t in tables)


def test_few_bad_items_are_quarantined_and_the_drop_goes_on(store: ObjectStore, keyring: KeyRing) -> None:
    dicoms = corpus_files("dicom")
    files = dict(dicoms)
    first = next(iter(dicoms.values()))
    files["dicom/future.dcm"] = dicom_variant(first, StudyDate="29991231", SOPInstanceUID="1.2.3.999.1")
    ingest(store, keyring, "mostly-good", files)
    report = DropValidator(store, keyring, max_item_failure_fraction=0.5).validate("src", "mostly-good", "dicom")
    assert report.passed and report.critical_failures == []
    assert report.quarantined_by_reason() == {"validation_failed": 1}
    assert "study_date" in report.quarantined[0].detail
    assert len(report.passed_items) == len(dicoms)
    files["dicom/no-modality.dcm"] = dicom_variant(first, Modality=None, SOPInstanceUID="1.2.3.999.2")
    ingest(store, keyring, "no-modality", files)
    again = DropValidator(store, keyring, max_item_failure_fraction=0.5).validate("src", "no-modality", "dicom")
    details = sorted(r.detail for r in again.quarantined)
    assert any(d.endswith("missing: Modality") for d in details), details


def test_too_many_bad_items_or_a_critical_rule_stop_the_drop(store: ObjectStore, keyring: KeyRing) -> None:
    first = next(iter(corpus_files("dicom").values()))
    ingest(store, keyring, "bad", {"dicom/a.dcm": first, "dicom/b.dcm": b"not dicom at all"}, {"dicom/b.dcm": "dicom"})
    report = DropValidator(store, keyring, max_item_failure_fraction=0.2).validate("src", "bad", "dicom")
    assert not report.passed and report.critical_failures == ["too_many_item_failures"]
    assert report.quarantined_by_reason() == {"not_dicom": 1}
    # Two files with one SOP Instance UID: a frame-level critical rule.
    twin = dicom_variant(first, InstanceNumber=99)
    ingest(store, keyring, "twins", {"dicom/a.dcm": first, "dicom/b.dcm": twin})
    twins = DropValidator(store, keyring).validate("src", "twins", "dicom")
    assert twins.critical_failures == ["expect_column_values_to_be_unique[sop_instance_uid]"]
    assert not read_validated_record(store, keyring, "dicom", "src", "twins")["passed"]


def test_table_rows_failing_are_split_off_and_duplicate_keys_stop_the_drop(
    store: ObjectStore, keyring: KeyRing
) -> None:
    labs = corpus_files("tabular")["tabular/labs.csv"].decode().splitlines()
    header, rows = labs[0], labs[1:]
    cols = header.split(",")
    bad = rows[0].split(",")
    bad[cols.index("value")] = "not-a-number"
    bad[cols.index("collected_at")] = "2999-01-01"
    ingest(store, keyring, "rows", {"tabular/labs.csv": "\n".join([header, *rows, ",".join(bad)]).encode() + b"\n"})
    report = DropValidator(store, keyring).validate("src", "rows", "tabular")
    assert report.passed
    assert [(t.rows, t.rows_rejected) for t in report.tables] == [(len(rows), 1)]
    assert report.quarantined_by_reason() == {"rejected_rows": 1}
    detail = report.quarantined[0].detail
    assert "labs/expect_column_values_to_not_be_null[value]" in detail and "collected_at" in detail
    ingest(store, keyring, "dups", {"tabular/labs.csv": "\n".join([header, *rows, rows[0]]).encode() + b"\n"})
    dups = DropValidator(store, keyring).validate("src", "dups", "tabular")
    assert dups.critical_failures == ["labs/expect_compound_columns_to_be_unique[mrn+test_code+collected_at]"]


# -- through Dagster ------------------------------------------------------------------------
def settings_for(tmp_path: Path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "data", key_dir=tmp_path / "keys")


@dg.asset(
    key=["promoted", "tabular"],
    deps=[dg.AssetKey(["validated", "tabular"])],
    group_name="validated",
    partitions_def=dg.DynamicPartitionsDefinition(name="drops"),
)
def promoted_tabular(context) -> None:
    """Stands in for the next stage (de-identification): it must never run for a stopped drop."""
    require_validation_passed(context, "tabular")


def test_blocking_check_stops_promotion_now_and_in_later_runs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    store = settings.open_store()
    labs = corpus_files("tabular")["tabular/labs.csv"].decode().splitlines()
    write_drop(store, "src", "ok", {"tabular/labs.csv": ("\n".join(labs) + "\n").encode()})
    write_drop(store, "src", "dup", {"tabular/labs.csv": ("\n".join([*labs, labs[1]]) + "\n").encode()})
    defs = dg.Definitions.merge(build_definitions(settings), dg.Definitions(assets=[promoted_tabular]))
    job = dg.define_asset_job("through_promotion", selection=dg.AssetSelection.groups("raw", "validated"))
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("drops", ["src/ok", "src/dup"])
        resolved = defs.resolve_job_def("through_promotion")
        ok = resolved.execute_in_process(instance=instance, partition_key="src/ok", raise_on_error=False)
        assert ok.success
        dup = resolved.execute_in_process(instance=instance, partition_key="src/dup", raise_on_error=False)
        assert not dup.success
        evaluations = {e.asset_key.path[-1]: e for e in dup.get_asset_check_evaluations()}
        assert not evaluations["tabular"].passed
        assert "expect_compound_columns_to_be_unique" in json.dumps(
            {k: str(v.value) for k, v in evaluations["tabular"].metadata.items()}
        )

        def materialized(key: list[str], partition: str) -> int:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=10
            ).records
            return len(records)

        assert materialized(["promoted", "tabular"], "src/ok") == 1
        assert materialized(["validated", "tabular"], "src/dup") == 1  # stopped here, visibly
        assert materialized(["promoted", "tabular"], "src/dup") == 0
        assert validation_passed(instance, "tabular", "src/ok")
        assert not validation_passed(instance, "tabular", "src/dup")
        # A later run that targets only the next stage is refused by the gate.
        later = resolved.execute_in_process(
            instance=instance,
            partition_key="src/dup",
            asset_selection=[dg.AssetKey(["promoted", "tabular"])],
            raise_on_error=False,
        )
        assert not later.success and materialized(["promoted", "tabular"], "src/dup") == 0
        failure = next(e for e in later.all_events if e.is_step_failure)
        error = failure.step_failure_data.error  # type: ignore[union-attr]
        assert error.cause is not None and error.cause.cls_name == ValidationGateClosed.__name__


def test_failing_values_never_reach_dagster_or_quarantine_records(tmp_path: Path) -> None:
    """Plant identifiers exactly where GX reports failing values, then grep everything Dagster kept."""
    settings = settings_for(tmp_path)
    store = settings.open_store()
    canary_mrn, canary_name, canary_value = "MRNZQ9931", "Zebulon Quackenbush", "QX-VALUE-7731"
    labs = corpus_files("tabular")["tabular/labs.csv"].decode().splitlines()
    cols = labs[0].split(",")
    planted = labs[1].split(",")
    planted[cols.index("mrn")] = canary_mrn
    planted[cols.index("patient_name")] = canary_name
    planted[cols.index("value")] = canary_value  # fails not-null after coercion
    table = "\n".join([*labs, ",".join(planted), ",".join(planted)]) + "\n"  # and a duplicated key
    first = next(iter(corpus_files("dicom").values()))
    weird = dicom_variant(first, Modality="ZQMODALITY", PatientName="Quackenbush^Zebulon", StudyDate="29990101")
    write_drop(store, "src", "phi", {"tabular/labs.csv": table.encode(), "dicom/w.dcm": weird, "dicom/ok.dcm": first})
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("drops", ["src/phi"])
        job = build_definitions(settings).resolve_job_def("process_drop")
        result = job.execute_in_process(instance=instance, partition_key="src/phi", raise_on_error=False)
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["tabular_suite"] is False
        logs = json.dumps([repr(e) for e in instance.all_logs(result.run_id)])
    needles = (canary_mrn, canary_name, canary_value, "ZQMODALITY", "Quackenbush", "29990101")
    assert find_planted([("event log", logs.encode())], needles) == []
    assert find_planted(files_under(home), needles) == []
    clear = [(i.key, read_all(store, i.key)) for i in store.list("quarantine/") if i.key.endswith(".json")]
    assert clear and find_planted(clear, needles) == []
    assert find_planted(files_under(settings.data_dir, exclude=[settings.data_dir / "landing"]), needles) == []


@pytest.mark.parametrize("fraction", ["1.5", "-0.1"])
def test_failure_fraction_setting_is_validated(tmp_path: Path, fraction: str) -> None:
    from clinical_pipelines.settings import SettingsError

    with pytest.raises(SettingsError):
        Settings.from_env(
            {"CLINICAL_PIPELINES_MAX_ITEM_FAILURE_FRACTION": fraction}, data_dir=tmp_path / "d", key_dir=tmp_path / "k"
        )


def test_a_large_dicom_is_judged_from_its_header_alone_and_the_same_way(store: ObjectStore, keyring: KeyRing) -> None:
    corpus = SynthCorpus(21, n_patients=1, slices_per_series=2, notes_per_patient=0)
    big = next(f.data for d in corpus.iter_drops() for f in d.files if f.modality == "dicom")
    assert len(big) > HEADER_PREFIX_BYTES * 4
    assert parse_dicom(big[:HEADER_PREFIX_BYTES], size=len(big)) == parse_dicom(big)
    # A prefix cannot show a cut at the end: parse_dicom says so, and the engine reads the whole file.
    cut = big[:-4096]
    assert reason(parse_dicom(cut[:HEADER_PREFIX_BYTES], size=len(cut))) == "truncated_dicom"
    ingest(store, keyring, "big", {"dicom/ok.dcm": big, "dicom/cut.dcm": cut})
    report = DropValidator(store, keyring, max_item_failure_fraction=0.5).validate("src", "big", "dicom")
    assert report.quarantined_by_reason() == {"truncated_dicom": 1}
    # Judged from its first chunk, but every chunk is authenticated (streamed): a flipped byte anywhere is caught.
    assert report.bytes_read == len(big) + len(cut)
