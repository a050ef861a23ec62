"""Audit log throughput: append records in batches and verify the chain, beside a hashlib baseline, in one run.

    .venv/bin/python benchmarks/audit.py [--records 1000000] [--batch 10000] [--catalog-url URL]

Appends ``--records`` audit records (``AuditLog.append_many``, ``--batch`` per transaction) to a fresh
catalog (a SQLite file in a temp folder unless ``--catalog-url`` names another, e.g. PostgreSQL), then
verifies the whole chain from the database (``AuditLog.verify``). The baseline is the same canonical
records hashed with hashlib in one Python loop, no database: what the chain costs at least. Prints records/s
for each and the ratios (targets: append >= 20,000 records/s, verify >= 0.7x the baseline). Nothing here is a
test; compare within one run only.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from clinical_pipelines.catalog.audit import AuditEntry, AuditLog, canonical
from clinical_pipelines.catalog.repository import Catalog


def entries(n: int) -> list[AuditEntry]:
    """``n`` entries shaped like real ones: principals, actions, version targets, some refusals."""
    actions = ("read", "reproduce", "export", "promote")
    return [
        AuditEntry(f"user-{i % 13}", actions[i % 4], f"dataset-{i % 29}@{i % 5}",
                   "refused" if i % 11 == 0 else "allowed", purpose="model-training",
                   detail="missing grant read:dataset:phi" if i % 11 == 0 else None)
        for i in range(n)
    ]  # fmt: skip


def baseline(rows: list[tuple]) -> float:  # type: ignore[type-arg]
    """Seconds to hash every record's canonical encoding and check its link, in one loop (no database)."""
    started = time.perf_counter()
    prev = "0" * 64
    for seq, at, principal, action, target, purpose, outcome, detail, prev_hash, stored in rows:
        digest = hashlib.sha256(canonical(seq, at, principal, action, target, purpose, outcome, detail,
                                          prev_hash)).hexdigest()  # fmt: skip
        if digest != stored or prev_hash != prev:
            raise SystemExit(f"baseline disagrees with the stored chain at {seq}")
        prev = digest
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--catalog-url", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    try:
        url = args.catalog_url or f"sqlite:///{work / 'catalog.db'}"
        log = AuditLog(Catalog.open(url).engine)
        todo = entries(args.batch)
        started = time.perf_counter()
        for start in range(0, args.records, args.batch):
            log.append_many(todo[: min(args.batch, args.records - start)])
        append_s = time.perf_counter() - started

        started = time.perf_counter()
        result = log.verify()
        verify_s = time.perf_counter() - started
        if not result.intact or result.records != args.records:
            raise SystemExit(f"verify failed: {result}")
        rows = list(log.rows())  # read once more, outside the timing: the baseline hashes them from memory
        base_s = baseline(rows)

        n = args.records
        print(f"catalog: {url.split('://')[0]}, {n:,} records in batches of {args.batch:,}")
        print(f"  append          {append_s:7.2f} s  {n / append_s:10,.0f} records/s   (target >= 20,000)")
        print(f"  verify          {verify_s:7.2f} s  {n / verify_s:10,.0f} records/s")
        print(f"  hashlib loop    {base_s:7.2f} s  {n / base_s:10,.0f} records/s   (baseline)")
        print(f"  verify / baseline: {base_s / verify_s:.2f}x   (target >= 0.7)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
