"""The global sample order of an epoch, and each reader's slice of it.

The order depends only on (seed, epoch, shard sizes, buffer size): shards are permuted, their
samples concatenated, and a bounded shuffle buffer is simulated over that stream. Readers
(rank x data-loader worker) then take interleaved blocks of *global positions*, so the union of all
readers is exactly the global order whatever their number, and resuming means starting at a
global position.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BUFFER_SIZE = 1024


def global_order(
    shard_sizes: Sequence[int], seed: int, epoch: int, *, shuffle: bool = True, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> np.ndarray:
    """Sample ids (``0..N-1``, numbered shard by shard in index order) in the order epoch ``epoch`` visits them.

    Promises: a permutation of all ids; the same arguments always give the same order; without
    ``shuffle`` it is the index order. With ``shuffle``, the shard order is a seeded permutation and
    each sample leaves the buffer at most ``buffer_size`` stream positions after entering it, so a
    reader only needs the shards around its position.
    """
    sizes = np.asarray(shard_sizes, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(sizes) else sizes
    total = int(sizes.sum())
    if not shuffle or total == 0:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 0x5EED])
    stream = np.concatenate([np.arange(starts[i], starts[i] + sizes[i]) for i in rng.permutation(len(sizes))])
    size = max(1, min(int(buffer_size), total))
    picks = rng.integers(0, size, size=max(0, total - size)).tolist()
    ids = stream.tolist()
    buffer = ids[:size]
    out: list[int] = []
    append = out.append
    for pick, incoming in zip(picks, ids[size:], strict=True):
        append(buffer[pick])
        buffer[pick] = incoming
    tail = np.asarray(buffer, dtype=np.int64)
    rng.shuffle(tail)
    return np.concatenate((np.asarray(out, dtype=np.int64), tail))


def slot_positions(
    total: int, start: int, *, slot: int, slots: int, block_size: int = 1, drop_last: bool = False
) -> np.ndarray:
    """The global positions in ``[start, total)`` that reader ``slot`` of ``slots`` yields, ascending.

    Positions from ``start`` are cut into blocks of ``block_size``; block ``k`` goes to slot
    ``k % slots``. Promises: the slots' positions are disjoint and together cover ``[start, total)``;
    with ``drop_last`` they cover only the whole rounds of ``slots`` full blocks, so every slot gets
    the same number of full blocks (distributed training needs equal batch counts on every rank).
    """
    if not 0 <= slot < slots:
        raise ValueError(f"slot {slot} is outside 0..{slots - 1}")
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    if drop_last:
        rounds = max(0, total - start) // (block_size * slots)
        total = start + rounds * block_size * slots
    positions = np.arange(max(0, start), total, dtype=np.int64)
    blocks = (positions - start) // block_size
    return positions[blocks % slots == slot]


def reader_slot(rank: int, world_size: int, worker: int, num_workers: int) -> tuple[int, int]:
    """``(slot, slots)`` of data-loader ``worker`` on ``rank``, matching how batches are consumed.

    With ``block_size`` = the per-rank batch size, training step ``t`` of rank ``r`` gets block
    ``t * world_size + r``: each rank's data loader takes its batches from workers round-robin, so
    block ``k`` goes to rank ``k % world_size`` and worker ``(k // world_size) % num_workers``.
    """
    if not (0 <= rank < world_size and 0 <= worker < num_workers):
        raise ValueError(f"rank {rank}/{world_size} or worker {worker}/{num_workers} out of range")
    return worker * world_size + rank, world_size * num_workers
