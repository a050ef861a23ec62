"""Version manifests: canonical JSON documents whose sha256 is the version id, stored write-once.

The document (schema ``clinical-pipelines.manifest/1``)::

    {"schema", "dataset", "version", "parents": {"drops", "previous"}, "spec_sha256", "code_version",
     "deid": {"profile", "version", "options"}, "split": {"seed", "ratios"},
     "objects": [{"key", "sha256", "size", "modality", "patient_id", "split", "label", "attributes"}]}

Objects are sorted by (patient_id, key); ratios are decimal strings; nothing is a float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_pipelines.curate.canonical import NotCanonical, canonical_bytes, parse_canonical, sha256_hex
from clinical_pipelines.storage import ObjectAlreadyExists, ObjectNotFound, ObjectStore
from clinical_pipelines.storage.base import read_all
from clinical_pipelines.zones import CURATED, curated_manifest_key, curated_version_claim_key

SCHEMA = "clinical-pipelines.manifest/1"
VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
# What identifies a version's content: everything except its number, its predecessor and the code
# that happened to build it (a rebuild by newer code over the same inputs and spec is the same version).
_NOT_CONTENT = ("version", "code_version")


class ManifestError(ValueError):
    """A manifest is missing, not canonical, does not hash to its id, or breaks the schema."""


class ManifestConflict(ManifestError):
    """A write-once manifest key already holds different bytes (never expected: the key is the hash)."""


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: its exact bytes, its id (their sha256) and the parsed document."""

    version_id: str
    data: bytes
    doc: dict[str, Any]

    @property
    def dataset(self) -> str:
        """The dataset (spec name)."""
        return str(self.doc["dataset"])

    @property
    def number(self) -> int:
        """The 1-based version number."""
        return int(self.doc["version"])

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The object rows."""
        return list(self.doc["objects"])

    @property
    def key(self) -> str:
        """Where the manifest is stored."""
        return curated_manifest_key(self.dataset, self.version_id)

    @property
    def total_bytes(self) -> int:
        """Sum of the objects' sizes."""
        return sum(int(o["size"]) for o in self.doc["objects"])

    @property
    def patients(self) -> int:
        """Distinct pseudonymous patients."""
        return len({o["patient_id"] for o in self.doc["objects"]})


def content_of(doc: dict[str, Any]) -> bytes:
    """Canonical bytes of what makes a version's content (no number, predecessor or code version)."""
    body = {k: v for k, v in doc.items() if k not in _NOT_CONTENT}
    body["parents"] = {k: v for k, v in doc["parents"].items() if k != "previous"}
    return canonical_bytes(body)


def _check_schema(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ManifestError(f"{where} is not a {SCHEMA} manifest")
    required = ("dataset", "version", "parents", "spec_sha256", "code_version", "deid", "split", "objects")
    missing = [k for k in required if k not in doc]
    if missing:
        raise ManifestError(f"{where} lacks {', '.join(missing)}")
    for i, row in enumerate(doc["objects"]):
        if not isinstance(row, dict) or not {"key", "sha256", "size", "patient_id", "split"} <= set(row):
            raise ManifestError(f"{where}: object row {i} is incomplete")
    return doc


def manifest_from_bytes(data: bytes, *, where: str = "manifest", expected_id: str | None = None) -> Manifest:
    """Parse manifest bytes; the id is their sha256 and must equal ``expected_id`` when given."""
    version_id = sha256_hex(data)
    if expected_id is not None and version_id != expected_id:
        raise ManifestError(f"{where} hashes to {version_id}, not to its id {expected_id}: it was altered")
    try:
        doc = parse_canonical(data)
    except NotCanonical as exc:
        raise ManifestError(f"{where}: {exc}") from None
    return Manifest(version_id, data, _check_schema(doc, where))


def load_manifest(store: ObjectStore, dataset: str, version_id: str) -> Manifest:
    """The manifest of ``dataset`` version ``version_id``, checked to hash to that id."""
    key = curated_manifest_key(dataset, version_id)
    try:
        data = read_all(store, key)
    except ObjectNotFound:
        raise ManifestError(f"no manifest at {key}") from None
    return manifest_from_bytes(data, where=key, expected_id=version_id)


def find_manifest(store: ObjectStore, version_id: str) -> Manifest:
    """The manifest with id ``version_id`` in whichever dataset holds it (one listing per dataset)."""
    if not VERSION_ID.match(version_id):
        raise ManifestError(f"{version_id!r} is not a version id (64 hex digits)")
    for dataset in store.list_children(f"{CURATED}/manifests/"):
        if store.head(curated_manifest_key(dataset, version_id)) is not None:
            return load_manifest(store, dataset, version_id)
    raise ManifestError(f"no manifest with id {version_id} in {store.url}")


def read_manifest_file(path: str | Path) -> Manifest:
    """A manifest kept as a local file (its id is the sha256 of the file's bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    return manifest_from_bytes(data, where=str(path))


def write_manifest(store: ObjectStore, doc: dict[str, Any]) -> Manifest:
    """Store ``doc`` write-once at its hash address; an existing identical manifest is accepted as is."""
    data = canonical_bytes(_check_schema(doc, "new manifest"))
    manifest = Manifest(sha256_hex(data), data, doc)
    try:
        store.put_bytes(manifest.key, data, write_once=True)
    except ObjectAlreadyExists:
        if read_all(store, manifest.key) != data:
            raise ManifestConflict(f"{manifest.key} exists with different bytes: refusing to overwrite") from None
    return manifest


# -- version numbers ----------------------------------------------------------------------------


def latest_claim(store: ObjectStore, dataset: str) -> tuple[int, str] | None:
    """(number, version id) of the dataset's highest claimed version number, or None before the first."""
    last = None
    for info in store.list(f"{CURATED}/versions/{dataset}/"):
        last = info.key
    if last is None:
        return None
    return int(last.rsplit("/", 1)[1]), read_all(store, last).decode().strip()


def claim_number(store: ObjectStore, dataset: str, number: int, version_id: str) -> str:
    """Claim ``number`` for ``version_id`` write-once; returns the id that holds the number (maybe another's)."""
    key = curated_version_claim_key(dataset, number)
    try:
        store.put_bytes(key, version_id.encode(), write_once=True)
        return version_id
    except ObjectAlreadyExists:
        return read_all(store, key).decode().strip()


def latest_manifest(store: ObjectStore, dataset: str) -> Manifest | None:
    """The dataset's latest version, or None when it has none."""
    claim = latest_claim(store, dataset)
    return None if claim is None else load_manifest(store, dataset, claim[1])
