"""Two gloo ranks x 2 workers over 3 indexed shards (fewer than ranks x workers): equal batch counts, no duplicated
objects, each rank's main process opening only the shard of its first object."""

from __future__ import annotations

import json
import socket
from collections import Counter

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, dataset: str, port: int, out: str) -> None:
    import torch.distributed as dist

    from orbitset.loaders import PairLoader

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        result = {}
        for drop_last in (True, False):
            loader = PairLoader(
                dataset, 2, num_workers=2, seed=4, drop_last=drop_last, multiprocessing_context="fork"  # spawn: ~25 s each here
            )
            assert (loader.rank, loader.world_size) == (rank, world_size)
            # planned from the manifest: this rank's main process opened one shard (through its index file)
            assert list(loader._main.readers._readers) == [0] and loader._shard_set.unindexed == 0
            batches = [batch["key"] for batch in loader]
            assert len(batches) == len(loader)
            result[str(drop_last)] = batches
        with open(f"{out}/rank{rank}.json", "w") as handle:
            json.dump(result, handle)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_two_workers_three_shards(dataset, tmp_path):
    shards = sorted(dataset.glob("train-*.tar"))
    assert len(shards) == 3  # fewer shards than ranks x workers (4)
    mp.spawn(_rank_main, args=(2, str(dataset), _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    all_keys = {f"class{c}__{o:04d}" for c in range(3) for o in range(4) if o != 3}  # the 9 train objects

    # drop_last=True: 9 objects -> 4 per rank (2 batches of 2), each object at most once across ranks
    counts = [len(r["True"]) for r in ranks]
    assert counts == [2, 2]
    used = [key for r in ranks for batch in r["True"] for key in batch]
    assert len(used) == 8 and len(set(used)) == 8 and set(used) <= all_keys

    # drop_last=False: padded by wrapping to 5 per rank (3 batches), every object used, one used twice
    counts = [len(r["False"]) for r in ranks]
    assert counts == [3, 3]
    used = Counter(key for r in ranks for batch in r["False"] for key in batch)
    assert set(used) == all_keys and sum(used.values()) == 10 and max(used.values()) == 2


def test_every_rank_plans_len_batches_every_epoch(dataset):
    from orbitset.loaders import PairLoader

    # the main process takes len(loader) batches an epoch from the workers' endless stream: the plans must agree
    for world_size in (1, 2, 3, 5):
        for per_object, batch_size, drop_last, resampled in [(1, 2, False, False), (2, 4, True, False), (3, 5, False, True),
                                                             (1, 7, True, True), (2, 3, False, False)]:
            loader = PairLoader(dataset, batch_size, pairs_per_object=per_object, drop_last=drop_last, resampled=resampled,
                                rank=world_size - 1, world_size=world_size)
            assert [len(loader.plan(epoch)) for epoch in range(3)] == [len(loader)] * 3
