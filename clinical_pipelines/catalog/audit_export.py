"""Audit exports an auditor can check without database access: FHIR R4 ``AuditEvent`` NDJSON with a signed head.

Each export file holds the records after the previous export's head, one ``AuditEvent`` per line, and carries
every field the record's hash covers (sequence number, previous and own hash in ``entity.detail``), so the chain
can be recomputed from the file alone (:func:`fields_of`). Beside it, a head document names the file's first
and last sequence numbers, the hash the first record links to (the previous export's head), the last record's
hash and the file's SHA-256, and is signed with Ed25519. :func:`verify_export` checks the signature, the file's
digest, every record's hash and every link, and that consecutive exports join.

The signing key is kept with the master keys: ``CLINICAL_PIPELINES_AUDIT_SIGNING_KEY`` (base64 of the 32-byte
Ed25519 private key) in production, where none is ever generated; locally ``audit-signing.ed25519`` in the key
folder, created once (mode 0600).

Before anything is signed the exported records are re-hashed and their links checked: a broken chain is refused
(:class:`AuditExportError`), never laundered into a signed export.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine

from clinical_pipelines.catalog.audit import GENESIS, AuditLog, record_hash
from clinical_pipelines.storage.base import ObjectAlreadyExists, ObjectStore, read_all
from clinical_pipelines.storage.keys import ENV_ENVIRONMENT, KeyError_, _write_exclusive
from clinical_pipelines.zones import ARCHIVE

FORMAT = "clinical-pipelines/audit-export@1"
EXPORT_PREFIX = f"{ARCHIVE}/audit/"
ENV_AUDIT_SIGNING_KEY = "CLINICAL_PIPELINES_AUDIT_SIGNING_KEY"
SIGNING_FILE = "audit-signing.ed25519"
MAX_RECORDS_PER_FILE = 100_000
ACTION_SYSTEM = "urn:clinical-pipelines:audit-action"
PRINCIPAL_SYSTEM = "urn:clinical-pipelines:principal"
PURPOSE_SYSTEM = "urn:clinical-pipelines:purpose"
TARGET_SYSTEM = "urn:clinical-pipelines:target"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_OUTCOME = {"allowed": "0", "refused": "4", "failed": "8"}  # FHIR: success, minor failure, serious failure
_OUTCOME_BACK = {v: k for k, v in _OUTCOME.items()}
# FHIR AuditEvent.action (C create, R read, U update, D delete, E execute) by the grant action or operation.
_FHIR_ACTION = {"read": "R", "reproduce": "R", "export": "R", "promote": "C", "delete": "D", "hold": "U",
                "keys": "E", "grant.add": "C", "grant.bootstrap": "C", "grant.revoke": "D",
                "grant.review-revoke": "D", "grant.review-keep": "R", "grant.close-project": "U"}  # fmt: skip
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class AuditExportError(ValueError):
    """The log cannot be exported as it is (a broken chain, a gap after the last export); one line."""


class SigningKeyError(KeyError_):
    """The audit signing key is missing or malformed (never carries key material); one line, exit 2."""


# -- the signing key -----------------------------------------------------------------------------


def _private_from_b64(text: str, where: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        if len(raw) != 32:
            raise ValueError
        return Ed25519PrivateKey.from_private_bytes(raw)
    except ValueError:
        raise SigningKeyError(f"{where} must be the base64 of a 32-byte Ed25519 private key") from None


def load_signing_key(key_dir: Path, env: Mapping[str, str] | None = None, *,
                     production: bool | None = None) -> Ed25519PrivateKey:  # fmt: skip
    """The audit signing key: ``CLINICAL_PIPELINES_AUDIT_SIGNING_KEY`` if set; else (never in production, which
    refuses with :class:`SigningKeyError`) the key folder's, created on first use. ``production`` None: as
    ``CLINICAL_PIPELINES_ENV`` says (like :func:`~clinical_pipelines.storage.keys.load_keyring`)."""
    env = os.environ if env is None else env
    if production is None:
        production = env.get(ENV_ENVIRONMENT, "").strip() == "production"
    if env.get(ENV_AUDIT_SIGNING_KEY, "").strip():
        return _private_from_b64(env[ENV_AUDIT_SIGNING_KEY], ENV_AUDIT_SIGNING_KEY)
    if production:
        raise SigningKeyError(f"production signs audit exports with {ENV_AUDIT_SIGNING_KEY} from your secret manager "
                              "and never generates one: it is not set")  # fmt: skip
    path = Path(key_dir) / SIGNING_FILE  # not *.key: that pattern is the master-key ring
    try:
        if not path.exists():
            Path(key_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
            fresh = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            _write_exclusive(path, base64.b64encode(fresh))  # a concurrent creator may win: read what is there
        if path.stat().st_mode & 0o077:
            raise SigningKeyError(f"the audit signing key {path} is readable by others; chmod 600 it")
        stored = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read or create the audit signing key {path} "
                              f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from None  # fmt: skip
    return _private_from_b64(stored, f"the audit signing key {path}")


def public_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signing_key_id(key: Ed25519PublicKey) -> str:
    """``ed25519-`` and the first 16 hex digits of the public key's SHA-256."""
    return "ed25519-" + hashlib.sha256(public_raw(key)).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), for an auditor."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# -- records as FHIR AuditEvent ------------------------------------------------------------------


def _fhir_action(action: str) -> str:
    return _FHIR_ACTION.get(action) or _FHIR_ACTION.get(action.partition(".")[0], "E")


def to_audit_event(row: Sequence[Any]) -> dict[str, Any]:
    """A FHIR R4 ``AuditEvent`` for one record (a row of ``seq ... record_hash``), carrying every hashed field."""
    seq, at, principal, action, target, purpose, outcome, detail, prev_hash, digest = row
    agent: dict[str, Any] = {"who": {"identifier": {"system": PRINCIPAL_SYSTEM, "value": principal}},
                             "requestor": True}  # fmt: skip
    if purpose is not None:
        agent["purposeOfUse"] = [{"coding": [{"system": PURPOSE_SYSTEM, "code": purpose}]}]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{seq}",
        "type": {"system": _DCM, "code": "110100", "display": "Application Activity"},
        "subtype": [{"system": ACTION_SYSTEM, "code": action}],
        "action": _fhir_action(action),
        "recorded": f"{at}Z",
        "outcome": _OUTCOME[outcome],
        "agent": [agent],
        "source": {
            "observer": {"display": "clinical-pipelines"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                      "display": "Application Server"}],
        },
        "entity": [{
            "what": {"identifier": {"system": TARGET_SYSTEM, "value": target}},
            "detail": [{"type": "seq", "valueString": str(seq)}, {"type": "prev_hash", "valueString": prev_hash},
                       {"type": "record_hash", "valueString": digest}],
        }],
    }
    if detail is not None:
        event["outcomeDesc"] = detail
    return event


def fields_of(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """The record an ``AuditEvent`` of :func:`to_audit_event` carries: ``(seq, at, ..., prev_hash, record_hash)``;
    :class:`AuditExportError` if it is not one."""
    try:
        agent = event["agent"][0]
        details = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
        purpose = agent["purposeOfUse"][0]["coding"][0]["code"] if "purposeOfUse" in agent else None
        recorded = str(event["recorded"])
        if event["resourceType"] != "AuditEvent" or not recorded.endswith("Z"):
            raise ValueError
        return (int(details["seq"]), recorded[:-1], agent["who"]["identifier"]["value"],
                event["subtype"][0]["code"], event["entity"][0]["what"]["identifier"]["value"], purpose,
                _OUTCOME_BACK[event["outcome"]], event.get("outcomeDesc"), details["prev_hash"],
                details["record_hash"])  # fmt: skip
    except (KeyError, IndexError, TypeError, ValueError):
        raise AuditExportError("a line is not an AuditEvent of this format") from None


# -- export --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_audit` wrote: head-document keys, records, and the chain head it signed."""

    heads: list[str]
    records: int
    head_seq: int
    head_hash: str


def _signed(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return {**body, "signature": base64.b64encode(key.sign(_JSON.encode(body).encode())).decode()}


def head_keys(store: ObjectStore) -> list[str]:
    """Every export head's key, oldest first (names start with the zero-padded first sequence number)."""
    return sorted(o.key for o in store.list(EXPORT_PREFIX) if o.key.endswith(".head.json"))


def head_documents(store: ObjectStore) -> list[dict[str, Any]]:
    """Every export head in the archive zone, oldest first."""
    return [json.loads(read_all(store, key)) for key in head_keys(store)]


def _put_once(store: ObjectStore, key: str, stream: BinaryIO, sha256: str) -> None:
    """Write ``key`` once; a crash-left copy with the same digest counts as written (exports are deterministic)."""
    try:
        store.put_stream(key, stream, write_once=True)
    except ObjectAlreadyExists:
        if hashlib.sha256(read_all(store, key)).hexdigest() != sha256:
            raise AuditExportError(f"{key} exists with other content: a second exporter? verify the exports") from None


def export_audit(engine: Engine, store: ObjectStore, key: Ed25519PrivateKey, *,
                 max_records: int = MAX_RECORDS_PER_FILE) -> ExportReport:  # fmt: skip
    """Export every record after the last export's head into ``archive/audit/`` and sign each file's head.

    Promises: each file is ``<first>-<last>.ndjson`` (``AuditEvent`` per line, at most ``max_records``) with
    ``<first>-<last>.head.json`` written after it; the first record links to the previous head; nothing is
    signed unless every exported record re-hashes to its hash and links to the one before. Re-running after a
    crash finishes the export; running with nothing new writes nothing.
    """
    keys = head_keys(store)  # only the newest head is read: the export continues from it
    last = json.loads(read_all(store, keys[-1])) if keys else None
    prev_seq, prev_hash = (int(last["head_seq"]), str(last["head_hash"])) if last else (0, GENESIS)
    log = AuditLog(engine)
    last_seq, _ = log.head()
    if last_seq < prev_seq:
        raise AuditExportError(f"the log ends at record {last_seq} but was exported up to {prev_seq}: records "
                               "were removed; run clinical-pipelines audit verify")  # fmt: skip
    public = key.public_key()
    written: list[str] = []
    total = 0
    rows = log.rows(first=prev_seq + 1, last=last_seq) if last_seq > prev_seq else iter(())
    while True:
        first, link, count = prev_seq + 1, prev_hash, 0
        digest = hashlib.sha256()
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
            for row in itertools.islice(rows, max_records):  # one file's records, streamed
                seq, *fields, stored_prev, stored_hash = row
                if seq != first + count or stored_prev != link or record_hash(seq, *fields, stored_prev) != stored_hash:
                    raise AuditExportError(f"record {first + count} breaks the chain: nothing exported past it; run "
                                           "clinical-pipelines audit verify")  # fmt: skip
                line = _JSON.encode(to_audit_event(row)).encode() + b"\n"
                digest.update(line)
                spool.write(line)
                link, count = stored_hash, count + 1
            if not count:
                break
            spool.seek(0)
            name = f"{EXPORT_PREFIX}{first:012d}-{first + count - 1:012d}"
            _put_once(store, f"{name}.ndjson", spool, digest.hexdigest())  # type: ignore[arg-type]
        doc = _signed({
            "format": FORMAT, "ndjson": f"{name.rsplit('/', 1)[1]}.ndjson", "ndjson_sha256": digest.hexdigest(),
            "first_seq": first, "prev_hash": prev_hash, "head_seq": first + count - 1, "head_hash": link,
            "records": count, "key_id": signing_key_id(public),
            "public_key": base64.b64encode(public_raw(public)).decode(),
        }, key)  # fmt: skip
        store.put_bytes(f"{name}.head.json", _JSON.encode(doc).encode())  # Ed25519 is deterministic: a rerun agrees
        written.append(f"{name}.head.json")
        total += count
        prev_seq, prev_hash = first + count - 1, link
    return ExportReport(written, total, prev_seq, prev_hash)


# -- checking an export, without the database ----------------------------------------------------


@dataclass(frozen=True)
class ExportVerification:
    """What :func:`verify_export` found across the head documents it was given."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    key_id: str | None
    problem: str | None = None


def verify_export(heads: Sequence[tuple[bytes, BinaryIO]], public_key: Ed25519PublicKey | None = None,
                  ) -> ExportVerification:  # fmt: skip
    """Check exports given as ``(head document bytes, its NDJSON stream)``, in any order.

    Promises ``ok`` only when each head's signature verifies (with ``public_key``, else the key the head names,
    which proves integrity but not who signed), each NDJSON file hashes to its head's digest, every record
    re-hashes to its hash and links to the one before, the file ends at the head, and consecutive exports join
    (each starts where the one before ended). Otherwise ``problem`` names the first failure.
    """
    docs = []
    for raw, stream in heads:
        try:
            docs.append((json.loads(raw), stream))
        except ValueError:
            return ExportVerification(False, 0, 0, GENESIS, None, "a head document is not JSON")
    docs.sort(key=lambda d: int(d[0].get("first_seq", 0)))
    records, seq, link, key_id = 0, None, None, None
    for doc, stream in docs:
        where = f"export {doc.get('ndjson', '?')}"
        if doc.get("format") != FORMAT:
            return ExportVerification(False, records, seq or 0, link or GENESIS, key_id, f"{where}: unknown format")
        try:
            key = public_key or Ed25519PublicKey.from_public_bytes(base64.b64decode(doc["public_key"]))
            body = {k: v for k, v in doc.items() if k != "signature"}
            key.verify(base64.b64decode(doc["signature"]), _JSON.encode(body).encode())
        except (InvalidSignature, KeyError, ValueError):
            return ExportVerification(False, records, seq or 0, link or GENESIS, key_id,
                                      f"{where}: the head's signature does not verify")  # fmt: skip
        key_id = signing_key_id(key)
        if seq is not None and (doc["first_seq"] != seq + 1 or doc["prev_hash"] != link):
            return ExportVerification(False, records, seq, link or GENESIS, key_id,
                                      f"{where}: does not continue the export before it (records missing)")  # fmt: skip
        digest = hashlib.sha256()
        expected, link = int(doc["first_seq"]), str(doc["prev_hash"])
        for line in stream:
            digest.update(line)
            try:
                fields = fields_of(json.loads(line))
            except (AuditExportError, ValueError):
                return ExportVerification(False, records, expected - 1, link, key_id, f"{where}: a line is unreadable")
            if fields[0] != expected or fields[8] != link or record_hash(*fields[:9]) != fields[9]:
                return ExportVerification(False, records, expected - 1, link, key_id,
                                          f"{where}: record {expected} is not what the chain says")  # fmt: skip
            records, expected, link = records + 1, expected + 1, fields[9]
        if digest.hexdigest() != doc["ndjson_sha256"] or expected - 1 != doc["head_seq"] or link != doc["head_hash"]:
            why = f"{where}: the file does not match its signed head (cut or extended)"
            return ExportVerification(False, records, expected - 1, link, key_id, why)
        seq = int(doc["head_seq"])
    return ExportVerification(bool(docs), records, seq or 0, link or GENESIS, key_id,
                              None if docs else "no export given")  # fmt: skip
