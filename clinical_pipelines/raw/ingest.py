"""Ingest one landing drop into the raw zone: verify, sniff, encrypt, store once; quarantine the rest.

One streaming pass per file: the landing bytes are hashed, sniffed and
encrypted as they flow into the raw zone, and the object is published only if
its size and sha256 match drop.json (the store's ``verify`` hook), so a
truncated or corrupted upload never appears under a content address.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from clinical_pipelines.landing.manifest import (
    DROP_MANIFEST,
    MAX_MANIFEST_BYTES,
    DropManifest,
    DropManifestError,
    FileEntry,
    parse_drop_manifest,
)
from clinical_pipelines.landing.sniff import SNIFF_BYTES, sniff_modality
from clinical_pipelines.limits import TOO_LARGE, Limits
from clinical_pipelines.quarantine import Quarantine, QuarantineRecord, count_reasons
from clinical_pipelines.raw.zone import RawDropRecord, RawFile, RawZone
from clinical_pipelines.storage import (
    ObjectAlreadyExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    UnsafeKey,
    read_all,
)
from clinical_pipelines.storage.envelope import EncryptingReader
from clinical_pipelines.storage.hashing import HashingReader
from clinical_pipelines.storage.keys import KeyRing
from clinical_pipelines.zones import landing_drop_prefix, raw_object_key

STAGE = "ingest"


class DropNotFound(Exception):
    """The partition names a drop with no drop.json in landing (never complete, or removed)."""


class _Rejected(Exception):
    """A file failed a check; carries the quarantine reason (and what was measured)."""

    def __init__(self, reason: str, detail: str, *, keep_bytes: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.detail, self.keep_bytes = reason, detail, keep_bytes


@dataclass
class IngestReport:
    """The outcome of ingesting one drop. ``files`` holds source paths: never log them."""

    source: str
    drop_id: str
    files: list[RawFile] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    manifest_error: str | None = None
    bytes_read: int = 0
    new_objects: int = 0
    deduplicated: int = 0
    key_ids: set[str] = field(default_factory=set)
    seconds: float = 0.0
    record_written: bool = False

    @property
    def bytes_accepted(self) -> int:
        """Total size of the accepted files."""
        return sum(f.size for f in self.files)

    def sha256_list_digest(self, files: Iterable[RawFile] | None = None) -> str:
        """sha256 over the sorted "<sha256> <size>" lines of the accepted files (no paths)."""
        lines = sorted(f"{f.sha256} {f.size}\n" for f in (self.files if files is None else files))
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def quarantined_by_reason(self) -> dict[str, int]:
        """Count of quarantined items per reason code."""
        return count_reasons(self.quarantined)

    def throughput_mb_s(self) -> float:
        """MB (10^6 bytes) read from landing per second of ingest."""
        return round(self.bytes_read / 1e6 / self.seconds, 2) if self.seconds > 0 else 0.0


class DropIngestor:
    """Ingests drops from one store's landing zone into its raw and quarantine zones."""

    def __init__(self, store: ObjectStore, keyring: KeyRing, *, workers: int = 4, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.store = store
        self.keyring = keyring
        self.raw = RawZone(store, keyring)
        self.quarantine = Quarantine(store, keyring)
        self.workers = max(1, workers)

    # -- the drop ------------------------------------------------------------
    def ingest(self, source: str, drop_id: str) -> IngestReport:
        """Ingest ``landing/<source>/<drop_id>/``; see the module docstring.

        Raises :class:`DropNotFound` if the drop has no drop.json, and
        :class:`~clinical_pipelines.raw.zone.DropConflict` if the same drop id
        was ingested before with different content. Every other problem
        quarantines the item and lets the rest of the drop go on.
        """
        started = time.perf_counter()
        prefix = landing_drop_prefix(source, drop_id)
        report = IngestReport(source=source, drop_id=drop_id)
        manifest_info = self.store.head(prefix + DROP_MANIFEST)
        if manifest_info is None:
            raise DropNotFound(f"drop {source}/{drop_id} has no {DROP_MANIFEST} in landing")
        listing = {info.key[len(prefix) :]: info for info in self.store.list(prefix)}
        listing.pop(DROP_MANIFEST, None)
        manifest_sha = ""
        try:
            if manifest_info.size > MAX_MANIFEST_BYTES:  # refused unread; quarantine streams it
                raise DropManifestError("unreadable_drop_manifest", "drop.json is larger than 64 MiB")
            manifest_bytes = read_all(self.store, prefix + DROP_MANIFEST)
            manifest_sha = self.raw.put_small_object(manifest_bytes)
            manifest = parse_drop_manifest(manifest_bytes, source=source, drop_id=drop_id)
        except DropManifestError as exc:
            report.manifest_error = exc.reason
            self._quarantine_whole_drop(report, prefix, listing, exc)
        else:
            self._ingest_entries(report, prefix, manifest, listing)
        report.files.sort(key=lambda f: f.path)
        record = RawDropRecord(
            source=source,
            drop_id=drop_id,
            manifest_sha256=manifest_sha,
            files=tuple(report.files),
            quarantined=tuple(sorted((q.item_id, q.reason) for q in report.quarantined)),
        )
        report.record_written = self.raw.write_drop_record(record)
        report.seconds = time.perf_counter() - started
        return report

    def _ingest_entries(
        self, report: IngestReport, prefix: str, manifest: DropManifest, listing: dict[str, ObjectInfo]
    ) -> None:
        for problem in manifest.problems:
            # Bytes are kept only when the entry names a real file inside the drop.
            inside = problem.path is not None and problem.reason != "path_escapes_drop" and problem.path in listing
            self._quarantine(
                report,
                prefix,
                problem.reason,
                problem.detail,
                problem.path if inside else None,
                item_id=None if inside else f"entry-{problem.index}",
            )
        listed = {e.path for e in manifest.entries} | {p.path for p in manifest.problems if p.path}

        def work(entry: FileEntry) -> tuple[RawFile, str | None, int, bool] | _Rejected:
            return self._ingest_file(prefix, entry, listing.get(entry.path))

        if self.workers == 1:
            outcomes = [work(entry) for entry in manifest.entries]
        else:  # hashing, AES-GCM and file I/O release the GIL, so threads overlap them
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                outcomes = list(pool.map(work, manifest.entries))
        for entry, outcome in zip(manifest.entries, outcomes, strict=True):
            if isinstance(outcome, _Rejected):
                self._quarantine(
                    report,
                    prefix,
                    outcome.reason,
                    outcome.detail,
                    entry.path,
                    keep_bytes=outcome.keep_bytes,
                    declared=entry,
                )
                continue
            raw_file, key_id, read, new = outcome
            report.files.append(raw_file)
            report.bytes_read += read
            if key_id:
                report.key_ids.add(key_id)
            report.new_objects += new
            report.deduplicated += not new
        for path in sorted(set(listing) - listed):
            self._quarantine(report, prefix, "unlisted_file", "in the drop folder but not in drop.json", path)

    # -- one file ------------------------------------------------------------
    def _ingest_file(
        self, prefix: str, entry: FileEntry, info: ObjectInfo | None
    ) -> tuple[RawFile, str | None, int, bool] | _Rejected:
        try:
            source_stream = self.store.open_read(prefix + entry.path)
        except ObjectNotFound:
            return _Rejected("missing_file", "listed in drop.json but absent", keep_bytes=False)
        except UnsafeKey:
            return _Rejected("path_escapes_drop", "path is a symlink or resolves outside the drop", keep_bytes=False)
        if info is not None and info.size != entry.size:  # known from the listing: skip the encrypt pass
            source_stream.close()
            return _Rejected("size_mismatch", f"declared {entry.size} bytes, found {info.size}")
        if entry.size > (limit := self.limits.max_object_bytes(entry.modality)):  # refused before a byte is read
            source_stream.close()
            return _Rejected(TOO_LARGE, f"{entry.size} bytes; the limit is {limit} bytes")
        with source_stream:
            hashing = HashingReader(source_stream, head_size=SNIFF_BYTES)
            checked: list[str] = []

            def verify() -> None:
                if hashing.size != entry.size:
                    raise _Rejected("size_mismatch", f"declared {entry.size} bytes, read {hashing.size}")
                if hashing.hexdigest() != entry.sha256:
                    raise _Rejected("sha256_mismatch", "content hash differs from drop.json")
                modality = entry.modality or sniff_modality(hashing.head, entry.path)
                if modality is None:
                    raise _Rejected("unrecognised_content", "not DICOM Part 10, delimited text or UTF-8 text")
                if hashing.size > (limit := self.limits.max_object_bytes(modality)):  # per sniffed modality
                    raise _Rejected(TOO_LARGE, f"{hashing.size} bytes; the {modality} limit is {limit} bytes")
                checked.append(modality)

            if self.raw.has_object(entry.sha256):
                try:
                    hashing.drain()
                    verify()
                except _Rejected as rejected:
                    return rejected
                return RawFile(entry.path, entry.sha256, entry.size, checked[0]), None, hashing.size, False
            encrypting = EncryptingReader(hashing, self.keyring, context=raw_object_key(entry.sha256))  # type: ignore[arg-type]
            new = True
            try:
                self.store.put_stream(
                    raw_object_key(entry.sha256),
                    encrypting,
                    write_once=True,
                    verify=verify,  # type: ignore[arg-type]
                )
            except _Rejected as rejected:
                return rejected
            except ObjectAlreadyExists:
                new = False  # a concurrent run stored the same verified content first
            return RawFile(entry.path, entry.sha256, entry.size, checked[0]), encrypting.key_id, hashing.size, new

    # -- quarantine ----------------------------------------------------------
    def _quarantine(
        self,
        report: IngestReport,
        prefix: str,
        reason: str,
        detail: str,
        path: str | None,
        *,
        keep_bytes: bool = True,
        item_id: str | None = None,
        declared: FileEntry | None = None,
    ) -> None:
        content = None
        if keep_bytes and path is not None:
            try:
                content = self.store.open_read(prefix + path)
            except (ObjectNotFound, UnsafeKey):
                content = None
        try:
            record = self.quarantine.put(
                reason=reason,
                detail=detail,
                stage=STAGE,
                source=report.source,
                drop_id=report.drop_id,
                path=path,
                content=content,
                item_id=item_id,
                size_declared=declared.size if declared else None,
                sha256_declared=declared.sha256 if declared else None,
            )
        finally:
            if content is not None:
                content.close()
        report.quarantined.append(record)

    def _quarantine_whole_drop(
        self, report: IngestReport, prefix: str, listing: dict[str, ObjectInfo], exc: DropManifestError
    ) -> None:
        self._quarantine(report, prefix, exc.reason, exc.detail, DROP_MANIFEST)
        for path in sorted(listing):
            self._quarantine(report, prefix, exc.reason, "file of a drop whose drop.json was rejected", path)
