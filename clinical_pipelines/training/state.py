"""A reader's resumable position: which epoch, and how many samples of its global order were consumed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReaderState:
    """``position`` counts samples of epoch ``epoch``'s global order already consumed by all readers together.

    It does not depend on the number of ranks or workers, so a job can resume on a different count.
    """

    epoch: int = 0
    position: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain JSON-able form."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReaderState:
        """Inverse of :meth:`to_dict`; rejects negative values."""
        state = cls(int(raw.get("epoch", 0)), int(raw.get("position", 0)), int(raw.get("seed", 0)))
        if state.epoch < 0 or state.position < 0:
            raise ValueError("epoch and position must be >= 0")
        return state
