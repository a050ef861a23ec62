"""PyTorch ``IterableDataset`` over a :class:`StreamingDataset` (the only module that imports torch).

Install with ``pip install 'clinical-pipelines[torch]'``. Each data-loader worker of each rank becomes
one reader of the shared global order; give ``block_size`` = the per-rank batch size so that batches
arrive in global order whatever the number of workers and ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from clinical_pipelines.training.reader import Sample, StreamingDataset


def to_tensors(sample: Sample) -> Sample:
    """Default transform: pixels become a ``torch.Tensor`` sharing the sample's own (writable) array, no copy."""
    if "pixels" in sample:
        sample["pixels"] = torch.from_numpy(np.asarray(sample["pixels"]))
    return sample


class TorchStreamingDataset(IterableDataset):  # type: ignore[type-arg]
    """Streams a split into a ``torch.utils.data.DataLoader``.

    Rank and world size come from ``torch.distributed`` when it is initialised (else from the
    arguments, else from ``dataset``); the worker from ``get_worker_info()``. Call :meth:`set_epoch`
    before each epoch and save :meth:`state_dict` with the samples consumed by all ranks.
    """

    def __init__(
        self,
        dataset: StreamingDataset,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Callable[[Sample], Any] | None = to_tensors,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if dist else dataset.rank)
        self.world_size = (
            world_size
            if world_size is not None
            else (torch.distributed.get_world_size() if dist else dataset.world_size)
        )
        self.transform = transform

    def __iter__(self) -> Iterator[Any]:
        """This worker's samples of the current epoch, from the saved position on."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = self.dataset.for_reader(rank=self.rank, world_size=self.world_size, worker=worker, num_workers=workers)
        for sample in reader:
            yield self.transform(sample) if self.transform is not None else sample

    def __len__(self) -> int:
        """Samples this rank sees per epoch (approximately, when the split does not divide evenly)."""
        return -(-len(self.dataset) // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` at the next iteration (as with a ``DistributedSampler``)."""
        self.dataset.set_epoch(epoch)

    def state_dict(self, samples_seen: int) -> dict[str, int]:
        """State to resume from after ``samples_seen`` samples of the current epoch (all ranks together)."""
        return self.dataset.state_dict(samples_seen)

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from :meth:`state_dict` (on any number of ranks and workers)."""
        self.dataset.load_state_dict(state)
