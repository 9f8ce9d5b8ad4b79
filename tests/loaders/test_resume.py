"""Determinism and resumption: batches independent of worker count, exact mid-epoch resume, epochs differ."""

from __future__ import annotations

import time

import pytest
import torch

from orbitset.errors import OrbitsetError
from orbitset.loaders import PairLoader


def signature(batch):
    return (batch["key"], batch["index_a"].tolist(), batch["index_b"].tolist())


def test_batches_do_not_depend_on_worker_count(dataset):
    inline = [signature(b) for b in PairLoader(dataset, 2, seed=7, num_workers=0)]
    workers = [signature(b) for b in PairLoader(dataset, 2, seed=7, num_workers=2)]
    assert inline == workers and len(inline) == 5


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on a 2-core machine: on purpose
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_running_ahead_across_epochs_give_each_epochs_own_batches(dataset, workers):
    # 5 batches an epoch: with 2 or 3 workers each epoch starts on another worker; the workers make the next epoch's
    # first batches while the main process still hands out this one's; a mid-epoch restart and set_epoch follow
    streamed = PairLoader(dataset, 2, seed=4, num_workers=workers)
    got = [[signature(b) for b in streamed] for _ in range(3)]
    for index, batch in enumerate(streamed):
        if index == 1:
            break
    got.append([signature(b) for b in streamed])  # the rest of epoch 3
    streamed.set_epoch(7)
    got.append([signature(b) for b in streamed])

    def epoch(number: int) -> list:
        fresh = PairLoader(dataset, 2, seed=4)
        fresh.set_epoch(number)
        return [signature(b) for b in fresh]

    assert got == [epoch(0), epoch(1), epoch(2), epoch(3)[2:], epoch(7)]
    assert streamed.state_dict()["epoch"] == 8


def test_dropping_a_loader_stops_its_workers_at_once(dataset):
    loader = PairLoader(dataset, 2, seed=4, num_workers=2)
    for index, _ in enumerate(loader):  # workers left with batches made ahead
        if index == 1:
            break
    workers = [w for w in loader._stream.iterator._workers]
    started = time.perf_counter()
    del loader, _
    assert not any(w.is_alive() for w in workers)
    assert time.perf_counter() - started < 3  # not torch's 5 s per worker of a DataLoader the garbage collector frees


def test_resume_mid_epoch_reproduces_the_uninterrupted_epoch(dataset):
    uninterrupted = PairLoader(dataset, 2, seed=9, num_workers=2, pairs_per_object=2)
    uninterrupted.set_epoch(3)
    expected = list(uninterrupted)

    first = PairLoader(dataset, 2, seed=9, num_workers=2, pairs_per_object=2)
    first.set_epoch(3)
    before = []
    for batch in first:
        before.append(batch)
        if len(before) == 4:
            break
    state = first.state_dict()
    assert state["epoch"] == 3 and state["batches_done"] == 4

    resumed = PairLoader(dataset, 2, seed=9, num_workers=1, pairs_per_object=2)
    resumed.load_state_dict(state)
    after = list(resumed)
    combined = before + after
    assert [signature(b) for b in combined] == [signature(b) for b in expected]
    for got, want in zip(combined, expected):
        assert torch.equal(got["view_a"], want["view_a"]) and torch.equal(got["rel_rotation"], want["rel_rotation"])
    assert resumed.state_dict()["epoch"] == 4 and resumed.state_dict()["batches_done"] == 0


def test_epochs_and_seeds_change_the_pairs(dataset):
    loader = PairLoader(dataset, 9, seed=1)
    epoch0, epoch1 = signature(next(iter(loader))), None
    loader.set_epoch(1)
    epoch1 = signature(next(iter(loader)))
    other_seed = signature(next(iter(PairLoader(dataset, 9, seed=2))))
    assert epoch0 != epoch1 and epoch0 != other_seed
    assert sorted(epoch0[0]) == sorted(epoch1[0])  # the same objects, in another order, with other views


def test_resume_refuses_another_world_size(dataset):
    state = PairLoader(dataset, 2, seed=1).state_dict()
    other = PairLoader(dataset, 2, seed=1, rank=0, world_size=2)
    with pytest.raises(OrbitsetError, match="world_size"):
        other.load_state_dict(state)


def test_unshuffled_order_and_resampling(dataset):
    from orbitset.shards import index_shard

    ordered = [k for b in PairLoader(dataset, 4, shuffle=False) for k in b["key"]]
    file_order = [key for shard in sorted(dataset.glob("train-*.tar")) for key in index_shard(shard)]
    assert ordered == file_order  # manifest shard order, then file order inside each shard
    resampled = PairLoader(dataset, 3, resampled=True, seed=3)
    keys = [k for b in resampled for k in b["key"]]
    assert len(keys) == 9 and len(set(keys)) < 9  # drawn with replacement (fixed seed: some repeat)
