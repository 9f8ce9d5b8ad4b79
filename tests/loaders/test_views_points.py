"""ViewLoader (single and all views) and PointLoader (sampling, rotations)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from orbitset.loaders import PairLoader, PointLoader, ViewLoader
from orbitset.loaders.decode import decode_cpu
from orbitset.schema import decode
from orbitset.shards import ShardReader


def samples_by_key(directory):
    out = {}
    for shard in sorted(directory.glob("*.tar")):
        with ShardReader(shard) as reader:
            out.update({fields["__key__"]: decode(fields) for fields in reader})
    return out


def test_single_view(dataset):
    loader = ViewLoader(dataset, 2, split="val", normalize=False, seed=3)
    samples = samples_by_key(dataset)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    for batch in batches:
        assert batch["view"].shape[1:] == (3, 32, 32) and batch["view"].dtype == torch.uint8
        for i, key in enumerate(batch["key"]):
            view = int(batch["index"][i])
            np.testing.assert_allclose(batch["rotation"][i].numpy(), samples[key].rotations[view], atol=1e-6)
            np.testing.assert_allclose(batch["latents"][i].numpy(), samples[key].latents[view], atol=1e-6)
            np.testing.assert_array_equal(batch["view"][i].permute(1, 2, 0).numpy(), decode_cpu(samples[key].images[view], None))


def test_all_views_with_reduced_size_decoding(dataset):
    loader = ViewLoader(dataset, 3, split="val", mode="all", size=16, normalize=False, shuffle=False)
    batch = next(iter(loader))
    samples = samples_by_key(dataset)
    assert batch["views"].shape == (3, 6, 3, 16, 16)
    assert batch["rotations"].shape == (3, 6, 3, 3) and batch["latents"].shape == (3, 6, 7)
    sample = samples[batch["key"][1]]
    for view in range(6):
        reduced = decode_cpu(sample.images[view], 16)  # draft-mode JPEG decoding at 1/2 scale
        np.testing.assert_array_equal(batch["views"][1, view].permute(1, 2, 0).numpy(), reduced)
        full = decode_cpu(sample.images[view], None).astype(float)
        halved = full.reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
        assert np.abs(reduced - halved).mean() < 6  # the reduced decode is a faithful small image
    np.testing.assert_allclose(batch["rotations"][1].numpy(), sample.rotations, atol=1e-6)


@pytest.mark.parametrize("rotate", [None, "so3", "z", "view"])
def test_points_rotated_and_rotation_returned(point_dataset, rotate):
    loader = PointLoader(point_dataset, 4, num_points=32, sampling="fps", rotate=rotate, seed=1)
    batch = next(iter(loader))
    samples = samples_by_key(point_dataset)
    assert batch["points"].shape == (4, 32, 3) and batch["normals"].shape == (4, 32, 3)
    for i, key in enumerate(batch["key"]):
        stored = samples[key].points[:32].astype(np.float64)
        rotation = batch["rotation"][i].double().numpy()
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        np.testing.assert_allclose(batch["points"][i].numpy(), stored[:, :3] @ rotation.T, atol=1e-4)
        np.testing.assert_allclose(batch["normals"][i].numpy(), stored[:, 3:] @ rotation.T, atol=1e-4)
        if rotate is None:
            np.testing.assert_allclose(rotation, np.eye(3))
        elif rotate == "z":
            assert rotation[2, 2] == pytest.approx(1.0, abs=1e-6)
        elif rotate == "view":
            assert any(np.allclose(rotation, r, atol=1e-6) for r in samples[key].rotations)
        else:
            assert not np.allclose(rotation, np.eye(3))


def test_points_random_sampling_is_a_seeded_subset(point_dataset):
    batch = next(iter(PointLoader(point_dataset, 4, num_points=16, sampling="random", seed=2, shuffle=False)))
    again = next(iter(PointLoader(point_dataset, 4, num_points=16, sampling="random", seed=2, shuffle=False)))
    samples = samples_by_key(point_dataset)
    assert torch.equal(batch["points"], again["points"])
    for i, key in enumerate(batch["key"]):
        stored = samples[key].points[:, :3].astype(np.float32)
        rows = {tuple(row) for row in stored}
        chosen = [tuple(row) for row in batch["points"][i].numpy()]
        assert set(chosen) <= rows and len(set(chosen)) == 16
    with pytest.raises(Exception, match="fewer than num_points"):
        list(PointLoader(point_dataset, 4, num_points=100))


def test_loaders_pickle_for_spawned_workers(dataset):
    loader = PairLoader(dataset, 2)
    next(iter(loader))  # opens readers in this process; the clone carries on after this first batch
    clone = pickle.loads(pickle.dumps(loader))
    assert [b["key"] for b in clone] == [b["key"] for b in PairLoader(dataset, 2)][1:]
