"""Which objects a rank reads in an epoch, in which batches, and the seeded generators that pick views.

Everything here is a pure function of (seed, epoch, rank, world size, shard object counts), so that every rank and
every worker computes the same plan without talking to the others, and a resumed run recomputes the same batches.

Split across ranks: objects are ordered by shard (shard order and the objects inside each shard shuffled per epoch),
and rank r takes the r-th contiguous slice of that order, then shuffles its slice. A rank so reads about
shards/world shards, yet the split is by object, not by whole shard, so every rank gets the same number of objects
even with fewer shards than ranks x workers. When the object count does not divide by the world size, ``drop_last``
drops the remainder (each object used at most once) and otherwise the order wraps around to pad (a few objects used
twice, as torch's DistributedSampler does). Workers take whole batches round-robin (worker w: batches w, w + W, ...),
which torch's DataLoader hands back in order: the batches do not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Sequence

import numpy as np

from orbitset.errors import UsageError
from orbitset.hashing import stable_hash

#: An item of a batch: (shard position, object position in the shard, sub-index: which of the object's draws).
Item = tuple[int, int, int]


def distributed_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the given values, else torch.distributed's when it is initialised, else (0, 1)."""
    if rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world_size = dist.get_world_size() if world_size is None else world_size
    rank, world_size = (0 if rank is None else rank), (1 if world_size is None else world_size)
    if not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is outside 0..{world_size - 1} (world size {world_size})")
    return rank, world_size


def object_draws(seed: int, epoch: int, key: str, count: int) -> list[int]:
    """`count` uniform 64-bit integers for (seed, epoch, key): BLAKE2b in counter mode, 8 integers per hash (no numpy
    generator is seeded, so drawing a pair's views costs one hash)."""
    draws: list[int] = []
    for block in range(-(-count // 8)):
        digest = hashlib.blake2b(f"{seed}:{epoch}:{key}:{block}".encode("utf-8"), digest_size=64).digest()
        draws.extend(struct.unpack("<8Q", digest))
    return draws[:count]


def sequence_views(seed: int, epoch: int, key: str, count: int, views: int, length: int) -> list[tuple[int, ...]]:
    """The `count` sequences of `length` distinct view indices (of `views`) drawn for object `key` in `epoch`, in
    drawn order: uniform over the ordered selections without replacement, from `object_draws` (`length` integers per
    sequence; the j-th picks uniformly among the views not yet in the sequence). SequenceLoader's and its webdataset
    stage's choice; with `length` 2, `pair_views`."""
    draws = object_draws(seed, epoch, key, length * count)
    chosen = []
    for sub in range(count):
        sequence: list[int] = []
        for j, draw in enumerate(draws[length * sub : length * (sub + 1)]):
            view = draw % (views - j)
            for taken in sorted(sequence):  # the view-th of the views not taken yet
                view += view >= taken
            sequence.append(view)
        chosen.append(tuple(sequence))
    return chosen


def pair_views(seed: int, epoch: int, key: str, pairs: int, views: int) -> list[tuple[int, int]]:
    """The (a, b) view indices, a != b, of the `pairs` pairs drawn for object `key` in `epoch`: uniform over the
    ordered pairs of distinct views (`sequence_views` of length 2: PairLoader's and the webdataset stage's choice)."""
    return sequence_views(seed, epoch, key, pairs, views, 2)  # type: ignore[return-value]


def object_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The generator of the point loader's random choices for an object in an epoch (point subsets, rotations, the view
    whose pose to take): seeded by (seed, epoch, key); view pairs and single views use the cheaper `object_draws`.

    A Philox generator keyed directly by the top 63 bits of a hash of the three (no SeedSequence, which would cost
    more than the draws); the key is part of the loaders' reproducibility: changing it changes every seeded choice."""
    return np.random.Generator(np.random.Philox(key=stable_hash(f"{seed}:{epoch}:{key}") >> 1))


def rank_objects(
    counts: Sequence[int], *, seed: int, epoch: int, rank: int, world_size: int, shuffle: bool, drop_last: bool, resampled: bool
) -> list[tuple[int, int]]:
    """The (shard, object) pairs rank `rank` reads in `epoch`, in reading order; the same length on every rank."""
    total = int(sum(counts))
    per_rank = total // world_size if drop_last else math.ceil(total / world_size)
    if per_rank == 0:
        raise UsageError(
            f"{total} objects cannot be shared among {world_size} ranks with drop_last=True; use drop_last=False or fewer ranks"
        )
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if resampled:
        picks = np.random.default_rng([seed, epoch, rank, 2]).integers(total, size=per_rank)
    else:
        if shuffle:
            rng = np.random.default_rng([seed, epoch, 0])
            order = np.concatenate(
                [offsets[s] + rng.permutation(counts[s]) for s in rng.permutation(len(counts))] or [np.zeros(0, np.int64)]
            )
        else:
            order = np.arange(total, dtype=np.int64)
        needed = per_rank * world_size
        if needed > total:
            order = np.resize(order, needed)  # wrap around to pad
        picks = order[rank * per_rank : (rank + 1) * per_rank]
        if shuffle:
            picks = np.random.default_rng([seed, epoch, 1, rank]).permutation(picks)
    shard = np.searchsorted(offsets, picks, side="right") - 1
    return [(int(s), int(p - offsets[s])) for s, p in zip(shard, picks)]


def make_batches(objects: Sequence[tuple[int, int]], per_object: int, batch_size: int, drop_last: bool) -> list[list[Item]]:
    """Chunk the items (each object repeated `per_object` times, consecutively) into batches of `batch_size`."""
    if batch_size < 1:
        raise UsageError(f"batch_size must be at least 1, got {batch_size}")
    items = [(s, o, j) for s, o in objects for j in range(per_object)]
    stop = len(items) - len(items) % batch_size if drop_last else len(items)
    return [items[i : i + batch_size] for i in range(0, stop, batch_size)]
