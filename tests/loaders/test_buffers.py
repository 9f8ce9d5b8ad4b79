"""Reused shared batch buffers, memory layouts, CPU normalisation and the cache of object handles."""

from __future__ import annotations

import gc

import pytest
import torch

from orbitset.loaders import MEAN_3DIEBENCH, STD_3DIEBENCH, PairLoader, ViewLoader
from orbitset.loaders.objects import HANDLE_BYTES, ObjectCache, ObjectFields
from orbitset.loaders.buffers import CLAIMED, FREE, HANDED_OUT, BatchBuffers
from orbitset.loaders.decode import normalize_hwc, to_channels_first


def pixels_of(batches):
    return [(b["key"], b["view_a"].clone(), b["view_b"].clone()) for b in batches]


def test_kept_batches_are_never_overwritten_and_buffers_come_back(dataset):
    reference = pixels_of(PairLoader(dataset, 2, seed=4, normalize=False))  # inline: no shared buffers
    loader = PairLoader(dataset, 2, seed=4, normalize=False, num_workers=1, prefetch_factor=1)
    kept = list(loader)  # every batch of epoch 0 held: more than the worker's buffers
    again = list(loader)  # epoch 1: the worker must not refill a buffer the first list still views
    assert [b["key"] for b in again] != [b["key"] for b in kept]
    for (keys, a, b), first in zip(reference, kept):
        assert first["key"] == keys and torch.equal(first["view_a"], a) and torch.equal(first["view_b"], b)
    busy = loader._stream.buffers.busy
    assert (busy == HANDED_OUT).any()
    del kept, again, first
    gc.collect()
    assert not (busy == HANDED_OUT).any()  # freed tensors released their buffers


def test_stopping_early_then_iterating_again(dataset):
    loader = PairLoader(dataset, 2, seed=5, normalize=False, num_workers=2)
    expected = [b["key"] for b in PairLoader(dataset, 2, seed=5)]
    for _ in range(3):
        for index, batch in enumerate(loader):  # stop after 2 of 5 batches: undelivered batches hold buffers
            if index == 1:
                break
        loader.set_epoch(0)
    keys = [b["key"] for b in loader]  # no deadlock, the right batches
    assert keys == expected
    del batch
    gc.collect()
    # buffers of batches discarded when iterations stopped early were freed, delivered ones released once dropped;
    # the only busy ones hold the next epoch's batches the workers have made ahead (at most prefetch_factor each)
    busy = loader._stream.buffers.busy
    assert not (busy == HANDED_OUT).any()
    assert ((busy == CLAIMED).sum(dim=1) <= loader.prefetch_factor).all()


def test_batch_buffers_claim_release_and_reset():
    buffers = BatchBuffers(workers=2, per_worker=2, nbytes=24)
    first, second = buffers.claim(1, (2, 2, 2, 3)), buffers.claim(1, (4, 3))
    assert first[0] == (1, 0) and second[0] == (1, 1) and buffers.claim(1, (1,)) is None  # worker 1 has none left
    assert buffers.claim(0, (25,)) is None  # larger than a buffer
    first[1].fill_(7)
    handed = buffers.hand_out(1, 0, (2, 2, 2, 3))
    assert int(handed.sum()) == 7 * 24 and buffers.busy[1, 0] == HANDED_OUT
    buffers.reset(1)  # a new iteration frees what never reached the user, not what the user holds
    assert buffers.busy[1].tolist() == [HANDED_OUT, FREE]
    view = handed[0]
    del handed
    assert buffers.busy[1, 0] == HANDED_OUT  # a view keeps the buffer
    del view
    assert buffers.busy[1, 0] == FREE
    assert BatchBuffers.for_batches(2, 4, 1 << 30) is None  # too large to preallocate


@pytest.mark.parametrize("num_workers", [0, 1])
def test_layouts_hold_the_same_values(dataset, num_workers):
    default = next(iter(PairLoader(dataset, 4, seed=1, normalize=False, num_workers=num_workers)))
    nchw = next(iter(PairLoader(dataset, 4, seed=1, normalize=False, channels_last=False, num_workers=num_workers)))
    assert default["view_a"].is_contiguous(memory_format=torch.channels_last)
    assert nchw["view_a"].is_contiguous() and torch.equal(default["view_a"], nchw["view_a"])
    floats = next(iter(PairLoader(dataset, 4, seed=1, channels_last=False, num_workers=num_workers)))
    assert floats["view_b"].is_contiguous() and floats["view_b"].dtype == torch.float32
    mean = torch.tensor(MEAN_3DIEBENCH).view(1, 3, 1, 1)
    std = torch.tensor(STD_3DIEBENCH).view(1, 3, 1, 1)
    torch.testing.assert_close(floats["view_b"], (nchw["view_b"].float() / 255 - mean) / std)
    views = next(iter(ViewLoader(dataset, 2, mode="all", split="val", normalize=False, shuffle=False, num_workers=num_workers)))
    contiguous = next(iter(ViewLoader(dataset, 2, mode="all", split="val", normalize=False, shuffle=False,
                                      channels_last=False, num_workers=num_workers)))
    assert views["views"].shape == (2, 6, 3, 32, 32) and contiguous["views"].is_contiguous()
    assert torch.equal(views["views"], contiguous["views"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_hwc_matches_the_definition(dtype):
    pixels = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8)
    mean = torch.tensor(MEAN_3DIEBENCH, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(STD_3DIEBENCH, dtype=torch.float64).view(3, 1, 1)
    expected = ((pixels.movedim(-1, -3).double() / 255 - mean) / std).to(dtype)
    for channels_last in (True, False):
        out = normalize_hwc(pixels, dtype, channels_last)
        assert out.shape == (2, 3, 3, 5, 7) and out.dtype == dtype
        assert out.is_contiguous() != channels_last
        torch.testing.assert_close(out, expected)
    assert torch.equal(to_channels_first(pixels), pixels.movedim(-1, -3).contiguous())
    with pytest.raises(ValueError, match="contiguous"):
        normalize_hwc(pixels.movedim(-1, -3), dtype)


def test_object_cache_keeps_recent_objects_within_its_bound(dataset):
    loader = PairLoader(dataset, 2)
    first = loader._first_object()
    reader, key = first.reader, first.key
    latents = len(first.raw("latents.npy"))
    cache = ObjectCache(max_bytes=2 * HANDLE_BYTES + latents - 1)  # two bare handles, or one with its latents
    handles = [cache.add(index, ObjectFields(reader, 0)) for index in range(3)]
    assert set(cache._objects) == {1, 2} and cache.bytes == 2 * HANDLE_BYTES and handles[0].cache is None
    assert cache.find(1) is handles[1] and cache.find(0) is None  # 1 is now the most recent
    handles[1].array("latents.npy")  # parsed: counted, and 2 (the least recent) goes
    assert set(cache._objects) == {1} and cache.bytes == HANDLE_BYTES + latents
    handles[0].array("latents.npy")  # a handle already dropped no longer counts
    assert cache.bytes == HANDLE_BYTES + latents
    prepared = cache.add(3, ObjectFields(reader, 0)).prepare(lambda obj: ("rows", HANDLE_BYTES))
    assert prepared == "rows" and cache.find(3).prepared == "rows" and set(cache._objects) == {3}
