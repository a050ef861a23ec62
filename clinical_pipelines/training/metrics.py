"""What a reader measures while it streams: cache hit rate, bytes fetched, samples/s, time waiting on I/O."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class ReaderMetrics:
    """Counters of one reader process (each data-loader worker keeps its own)."""

    samples: int = 0
    sample_bytes: int = 0
    shard_opens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    bytes_fetched: int = 0
    refetches: int = 0
    io_wait_s: float = 0.0
    started: float | None = None
    stopped: float | None = None

    def start(self) -> None:
        """Start (or resume) the clock; the first start counts, so the first shard's fetch is in the elapsed time."""
        if self.started is None:
            self.started = time.perf_counter()
        self.stopped = None

    def stop(self) -> None:
        """Stop the clock (the reader does this when an iteration ends or is abandoned)."""
        if self.started is not None:
            self.stopped = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        """Seconds from the first start to the last stop (or to now, while reading)."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.stopped if self.stopped is not None else time.perf_counter()) - self.started)

    @property
    def hit_rate(self) -> float:
        """Share of shard opens served from the cache without a fetch (0 when none)."""
        return self.cache_hits / self.shard_opens if self.shard_opens else 0.0

    @property
    def samples_per_s(self) -> float:
        """Samples yielded per second of elapsed time."""
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Plain numbers, e.g. for asset metadata."""
        return {
            "samples": self.samples,
            "sample_bytes": self.sample_bytes,
            "shard_opens": self.shard_opens,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": round(self.hit_rate, 4),
            "bytes_fetched": self.bytes_fetched,
            "refetches": self.refetches,
            "io_wait_s": round(self.io_wait_s, 4),
            "elapsed_s": round(self.elapsed_s, 4),
            "samples_per_s": round(self.samples_per_s, 1),
            "mb_per_s": round(self.sample_bytes / 1e6 / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
        }
