"""Shards checked against the manifest; corrupt samples raise ShardError naming shard and key, or are skipped."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from orbitset.errors import OrbitsetError, ShardError
from orbitset.loaders import PairLoader, ViewLoader
from orbitset.loaders.buffers import FREE, BatchBuffers
from orbitset.loaders.decode import decode_cpu
from orbitset.loaders.stream import WorkerState
from orbitset.schema import decode
from orbitset.shards import ShardReader, index_shard
from orbitset.testing import synthetic_sample

from .conftest import shard_with_bad_latents, write_samples


@pytest.fixture
def copy(dataset, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(dataset, target)
    return target


def corrupt_member(shard, key, field):
    """Overwrite a member's data in place (same size, so only decoding can notice)."""
    ref = index_shard(shard)[key][field]
    with open(shard, "r+b") as handle:
        handle.seek(ref.offset)
        handle.write(b"\x00" * ref.size)


def test_truncated_shard_is_refused_by_size(copy):
    shard = copy / "train-000001.tar"
    with open(shard, "r+b") as handle:
        handle.truncate(shard.stat().st_size - 1024)
    with pytest.raises(ShardError, match=r"train-000001\.tar.*manifest"):
        PairLoader(copy, 2)


def test_sha256_checked_when_asked(copy):
    shard = copy / "train-000000.tar"
    corrupt_member(shard, "class0__0000", "cls")  # same size, other bytes
    PairLoader(copy, 2)  # the size check alone passes
    with pytest.raises(ShardError, match=r"train-000000\.tar: sha256"):
        PairLoader(copy, 2, verify="sha256")


def corrupt_all_views(copy):
    shard = copy / "train-000000.tar"
    key = next(iter(index_shard(shard)))
    for view in range(6):
        corrupt_member(shard, key, f"{view:03d}.jpg")
    return key


def test_corrupt_image_raises_naming_shard_and_key(copy):
    key = corrupt_all_views(copy)
    with pytest.raises(ShardError, match=rf"train-000000\.tar sample '{key}' view \d: cannot decode"):
        list(PairLoader(copy, 3))


def test_corrupt_image_skipped_counted_and_reported(copy):
    key = corrupt_all_views(copy)
    loader = PairLoader(copy, 3, on_error="skip", num_workers=2)
    with pytest.warns(UserWarning, match=r"1 object\(s\) were skipped in epoch 0.*" + key):
        keys = [k for batch in loader for k in batch["key"]]
    assert loader.skipped == 1 and len(keys) == 8 and key not in keys
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = ViewLoader(copy, 3, on_error="skip", split="val")
        assert len([b for b in clean]) == 1 and clean.skipped == 0


def test_unreadable_shard_skipped_as_its_objects(copy):
    shard = copy / "train-000002.tar"  # holds one object
    data = bytearray(shard.read_bytes())
    data[:512] = b"\xff" * 512  # destroy the first header, keep the size
    shard.write_bytes(bytes(data))
    loader = PairLoader(copy, 2)  # the main process plans from the manifest: the shard is opened when first read
    with pytest.raises(ShardError, match=r"index .*train-000002\.oidx does not match shard train-000002\.tar: .*"
                                         r"no tar header at byte 0; rebuild it with 'orbitset index "):
        list(loader)
    loader = PairLoader(copy, 2, on_error="skip")
    with pytest.warns(UserWarning, match="train-000002.tar"):
        keys = [k for batch in loader for k in batch["key"]]
    assert len(keys) == 8 and loader.skipped == 1


def test_unreadable_shard_in_a_plain_list_is_reported_each_epoch(copy):
    shards = sorted(copy.glob("train-*.tar"))
    data = bytearray(shards[2].read_bytes())
    data[:512] = b"\xff" * 512
    shards[2].write_bytes(bytes(data))
    loader = PairLoader(shards, 4, on_error="skip")  # no manifest: the shard's object count is unknown
    for epoch in range(2):
        with pytest.warns(UserWarning, match="train-000002.tar"):
            keys = [k for batch in loader for k in batch["key"]]
        assert len(keys) == 8 and loader.skipped == 1 and loader.epoch == epoch + 1


def test_arrays_that_disagree_with_the_views_are_named(tmp_path):
    shard, keys = shard_with_bad_latents(tmp_path, np.zeros((3, 7)))  # 3 rows of the 7 latents for 4 views
    with pytest.raises(ShardError, match=rf"{keys[1]}.*latents.npy.*shape \(3, 7\), not \(4, 7\)"):
        list(PairLoader([shard], 3))
    loader = PairLoader([shard], 3, on_error="skip")
    with pytest.warns(UserWarning, match="1 object"):
        (batch,) = list(loader)
    assert sorted(batch["key"]) == [keys[0], keys[2]] and loader.skipped == 1


def read_samples(shard):
    with ShardReader(shard) as reader:
        return [decode(fields, validate_sample=False) for fields in reader]


def truncate_views(shard, key, views):
    """Zero the second half of some views' JPEG data (same size: the header still parses, decoding fails)."""
    entry = index_shard(shard)[key]
    with open(shard, "r+b") as handle:
        for view in views:
            ref = entry[f"{view:03d}.jpg"]
            handle.seek(ref.offset + ref.size // 2)
            handle.write(b"\x00" * (ref.size - ref.size // 2))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_objects_skipped_inside_a_batch_leave_the_others_intact(copy, num_workers):
    shard = copy / "train-000000.tar"
    key = list(index_shard(shard))[1]
    truncate_views(shard, key, range(6))
    samples = {s.key: s for path in sorted(copy.glob("train-*.tar")) for s in read_samples(path)}
    pairs = PairLoader(copy, 9, on_error="skip", shuffle=False, normalize=False, num_workers=num_workers)
    views = ViewLoader(copy, 9, mode="all", on_error="skip", shuffle=False, normalize=False, num_workers=num_workers)
    with pytest.warns(UserWarning, match=key):
        (batch,) = list(pairs)
    with pytest.warns(UserWarning, match=key):
        (all_views,) = list(views)
    assert pairs.skipped == views.skipped == 1 and key not in batch["key"] and key not in all_views["key"]
    assert batch["view_a"].shape[0] == all_views["views"].shape[0] == 8
    for i, other in enumerate(batch["key"]):
        for name, index in (("view_a", "index_a"), ("view_b", "index_b")):
            expected = decode_cpu(samples[other].images[int(batch[index][i])], None)
            np.testing.assert_array_equal(batch[name][i].permute(1, 2, 0).numpy(), expected)
    for i, other in enumerate(all_views["key"]):
        for view in range(6):
            expected = decode_cpu(samples[other].images[view], None)
            np.testing.assert_array_equal(all_views["views"][i, view].permute(1, 2, 0).numpy(), expected)


def test_a_batch_whose_objects_are_all_skipped_gives_its_buffer_back(copy):
    shard = copy / "train-000000.tar"
    for key in index_shard(shard):
        truncate_views(shard, key, range(6))
    loader = PairLoader(copy, 4, shuffle=False, on_error="skip", normalize=False)
    buffers = BatchBuffers(1, 2, 4 * 2 * 32 * 32 * 3)
    worker = WorkerState(loader._shard_set, 0, buffers)
    batch = loader.make_batch(loader.plan(0)[0], 0, worker)  # as worker 0: the 4 objects of the bad shard
    assert batch["_empty"] and len(batch["_skipped"]) == 4
    assert (buffers.busy == FREE).all()


def test_views_of_different_sizes_ask_for_size(tmp_path):
    samples = [synthetic_sample("class0", 0, index, views=3, size=16 + 8 * index, seed=1) for index in range(2)]
    data = write_samples(tmp_path / "mixed", samples)
    with pytest.raises(OrbitsetError, match=r"views of different sizes.*pass size="):
        list(PairLoader(data, 2, on_error="skip"))
    assert next(iter(PairLoader(data, 2, size=16)))["view_a"].shape == (2, 3, 16, 16)
