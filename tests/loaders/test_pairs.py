"""PairLoader: relative rotations against scipy, 3DIEBench's raw quaternion, latents, views and options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from orbitset.errors import OrbitsetError
from orbitset.loaders import MEAN_3DIEBENCH, STD_3DIEBENCH, PairLoader
from orbitset.loaders.decode import decode_cpu
from orbitset.schema import decode
from orbitset.shards import ShardReader


def samples_by_key(directory):
    out = {}
    for shard in sorted(directory.glob("*.tar")):
        with ShardReader(shard) as reader:
            for fields in reader:
                out[fields["__key__"]] = decode(fields)
    return out


def all_pairs(dataset, **kwargs):
    loader = PairLoader(dataset, 4, pairs_per_object=3, seed=11, **kwargs)
    return loader, list(loader)


@pytest.mark.parametrize("rotation", ["quat", "matrix", "6d", "axis_angle"])
def test_rel_rotation_matches_scipy_in_every_representation(dataset, rotation):
    _, batches = all_pairs(dataset, rotation=rotation)
    samples = samples_by_key(dataset)
    checked = 0
    for batch in batches:
        for i, key in enumerate(batch["key"]):
            sample = samples[key]
            a, b = int(batch["index_a"][i]), int(batch["index_b"][i])
            assert a != b
            expected = Rotation.from_matrix(sample.rotations[a]).inv() * Rotation.from_matrix(sample.rotations[b])
            got = batch["rel_rotation"][i].double().numpy()
            if rotation == "quat":
                reference = expected.as_quat()
                assert got[3] >= 0  # canonical
                assert min(np.abs(got - reference).max(), np.abs(got + reference).max()) < 1e-5
            elif rotation == "matrix":
                np.testing.assert_allclose(got, expected.as_matrix(), atol=1e-5)
            elif rotation == "6d":
                matrix = expected.as_matrix()
                np.testing.assert_allclose(got, np.concatenate([matrix[:, 0], matrix[:, 1]]), atol=1e-5)
            else:
                np.testing.assert_allclose(Rotation.from_rotvec(got).as_matrix(), expected.as_matrix(), atol=1e-5)
            checked += 1
    assert checked == 27  # 9 train objects x 3 pairs


def test_quat_raw_equals_3diebench_computation(dataset):
    _, batches = all_pairs(dataset, rotation="quat_raw")
    for batch in batches:
        euler_a, euler_b = batch["latents_a"][:, :3].double().numpy(), batch["latents_b"][:, :3].double().numpy()
        for i in range(len(batch["key"])):
            # 3DIEBench: R_a^-1 R_b from the Euler latents with scipy, as a quaternion, sign as composed
            reference = (Rotation.from_euler("xyz", euler_a[i]).inv() * Rotation.from_euler("xyz", euler_b[i])).as_quat()
            np.testing.assert_allclose(batch["rel_rotation"][i].double().numpy(), reference, atol=1e-6)


def test_batch_fields_match_the_samples(dataset):
    loader, batches = all_pairs(dataset, normalize=False)
    samples = samples_by_key(dataset)
    hue = [loader.factor_names.index(n) for n in ("floor_hue", "spot_hue")]
    assert loader.rel_latent_names == ["floor_hue", "spot_theta", "spot_phi", "spot_hue"]
    seen = set()
    for batch in batches:
        assert batch["view_a"].dtype == torch.uint8 and batch["view_a"].shape[1:] == (3, 32, 32)
        for i, key in enumerate(batch["key"]):
            sample = samples[key]
            a, b = int(batch["index_a"][i]), int(batch["index_b"][i])
            seen.add(key)
            assert int(batch["label"][i]) == sample.label
            np.testing.assert_allclose(batch["rot_a"][i].numpy(), sample.rotations[a], atol=1e-6)
            np.testing.assert_allclose(batch["latents_b"][i].numpy(), sample.latents[b], atol=1e-6)
            deltas = batch["rel_latents"][i].numpy()
            names = loader.rel_latent_names
            for column in hue:  # 3DIEBench's hue delta: plain b - a
                name = loader.factor_names[column]
                assert deltas[names.index(name)] == pytest.approx(sample.latents[b, column] - sample.latents[a, column], abs=1e-6)
            pixels = decode_cpu(sample.images[a], None)
            np.testing.assert_array_equal(batch["view_a"][i].permute(1, 2, 0).numpy(), pixels)
    assert len(seen) == 9


def test_normalisation_uses_3diebench_statistics(dataset):
    raw = next(iter(PairLoader(dataset, 4, seed=2, normalize=False)))
    normalised = next(iter(PairLoader(dataset, 4, seed=2, dtype=torch.float64)))
    mean = torch.tensor(MEAN_3DIEBENCH, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(STD_3DIEBENCH, dtype=torch.float64).view(1, 3, 1, 1)
    expected = (raw["view_b"].double() / 255 - mean) / std
    assert normalised["view_b"].dtype == torch.float64
    torch.testing.assert_close(normalised["view_b"], expected)


def test_resize_channels_last_and_pairs_per_object(dataset):
    loader = PairLoader(dataset, 6, pairs_per_object=2, size=16, channels_last=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 3  # 9 objects x 2 pairs = 18 items
    batch = batches[0]
    assert batch["view_a"].shape == (6, 3, 16, 16)
    assert batch["view_a"].is_contiguous(memory_format=torch.channels_last)
    assert batch["key"][0] == batch["key"][1]  # pairs of one object are consecutive
    reduced = decode_cpu(samples_by_key(dataset)[batch["key"][0]].images[int(batch["index_a"][0])], 16)
    assert reduced.shape == (16, 16, 3)


def test_quat_raw_refused_without_euler_latents(dataset, tmp_path):
    from orbitset.testing import synthetic_sample
    from tests.loaders.conftest import write_samples

    samples = []
    for index in range(2):
        sample = synthetic_sample("class0", 0, index, views=3, size=16, seed=1)
        sample.meta["factor_names"] = ["a", "b", "c", "floor_hue", "d", "e", "spot_hue"]
        samples.append(sample)
    write_samples(tmp_path / "noeuler", samples)
    with pytest.raises(OrbitsetError, match="quat_raw"):
        PairLoader(tmp_path / "noeuler", 2, rotation="quat_raw")
    assert len(PairLoader(tmp_path / "noeuler", 2, rotation="quat")) == 1


def test_channel_order_fix(tmp_path):
    from orbitset.testing import synthetic_sample
    from tests.loaders.conftest import write_samples

    sample = synthetic_sample("class0", 0, 0, views=2, size=16, seed=1)
    sample.meta["channel_order"] = "bgr"
    write_samples(tmp_path / "bgr", [sample])
    fixed = next(iter(PairLoader(tmp_path / "bgr", 1, normalize=False, shuffle=False)))
    kept = next(iter(PairLoader(tmp_path / "bgr", 1, normalize=False, shuffle=False, fix_channels=False)))
    assert torch.equal(fixed["view_a"], kept["view_a"].flip(1))
    assert not torch.equal(fixed["view_a"], kept["view_a"])


def test_bad_options_are_refused(dataset):
    with pytest.raises(ValueError, match="rotation"):
        PairLoader(dataset, 2, rotation="euler")
    with pytest.raises(OrbitsetError, match="CUDA"):
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
        PairLoader(dataset, 2, device="cuda")
    with pytest.raises(OrbitsetError, match="no split"):
        PairLoader(dataset, 2, split="test")


def test_translation_deltas_follow_the_other_factors(tmp_path):
    from orbitset.testing import synthetic_sample
    from tests.loaders.conftest import write_samples

    samples = []
    for index in range(3):
        sample = synthetic_sample("class0", 0, index, views=4, size=16, seed=2)
        sample.translations = np.random.default_rng(index).uniform(-0.5, 0.5, (4, 3))
        samples.append(sample)
    write_samples(tmp_path / "moved", samples)
    loader = PairLoader(tmp_path / "moved", 3, pairs_per_object=2, shuffle=False)
    assert loader.rel_latent_names[-3:] == ["translation_x", "translation_y", "translation_z"]
    by_key = {s.key: s for s in samples}
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            a, b = int(batch["index_a"][i]), int(batch["index_b"][i])
            moved = by_key[key].translations[b] - by_key[key].translations[a]
            np.testing.assert_allclose(batch["rel_latents"][i, -3:].numpy(), moved, atol=1e-6)
            np.testing.assert_allclose(batch["rel_latents"][i, 0].numpy(), by_key[key].latents[b, 3] - by_key[key].latents[a, 3], atol=1e-6)
