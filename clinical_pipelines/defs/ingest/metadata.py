"""Lineage metadata for raw-zone materializations: counts, bytes, hashes; never a name or a value."""

from __future__ import annotations

import dagster as dg

from clinical_pipelines.raw.ingest import IngestReport
from clinical_pipelines.version import code_version
from clinical_pipelines.zones import raw_drop_record_key


def raw_metadata(report: IngestReport, modality: str) -> dict[str, dg.MetadataValue]:
    """Metadata for the ``raw/<modality>`` output of one drop's ingest.

    Source file names can carry PHI, so files are identified only by sha256;
    quarantined items only by reason counts.
    """
    files = [f for f in report.files if f.modality == modality]
    return {
        "drop_id": dg.MetadataValue.text(report.drop_id),
        "source": dg.MetadataValue.text(report.source),
        "file_count": dg.MetadataValue.int(len(files)),
        "bytes": dg.MetadataValue.int(sum(f.size for f in files)),
        "sha256_list_digest": dg.MetadataValue.text(report.sha256_list_digest(files)),
        "drop_file_count": dg.MetadataValue.int(len(report.files)),
        "drop_bytes": dg.MetadataValue.int(report.bytes_accepted),
        "drop_sha256_list_digest": dg.MetadataValue.text(report.sha256_list_digest()),
        "quarantined_count": dg.MetadataValue.int(len(report.quarantined)),
        "quarantined_by_reason": dg.MetadataValue.json(report.quarantined_by_reason()),
        "manifest_error": dg.MetadataValue.text(report.manifest_error or "none"),
        "new_objects": dg.MetadataValue.int(report.new_objects),
        "deduplicated_objects": dg.MetadataValue.int(report.deduplicated),
        "throughput_mb_s": dg.MetadataValue.float(report.throughput_mb_s()),
        "encryption": dg.MetadataValue.text("AES-256-GCM envelope (per-object data key)"),
        "master_key_ids": dg.MetadataValue.text(",".join(sorted(report.key_ids)) or "none (all deduplicated)"),
        "raw_record": dg.MetadataValue.path(raw_drop_record_key(report.source, report.drop_id)),
        "code_version": dg.MetadataValue.text(code_version()),
    }
