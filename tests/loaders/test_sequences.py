"""SequenceLoader: K = 2 is PairLoader, consecutive relative rotations, only K views read, the 4x4 transforms of
3DIEBench-T against EquiCaps' composition, resumption, ranks, skipping, the webdataset stage and bad input."""

from __future__ import annotations

import json
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from scipy.spatial.transform import Rotation

from orbitset.datasets.convert import ConvertSettings, convert_source, read_split_dir
from orbitset.datasets.sie_synthetic import write_sie_tree
from orbitset.errors import OrbitsetError, ShardError, UsageError
from orbitset.loaders import PairLoader, SequenceLoader, images
from orbitset.loaders.decode import decode_cpu
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.plan import object_draws, pair_views, sequence_views
from orbitset.manifests.model import load_manifest
from orbitset.testing import synthetic_sample

from .conftest import write_samples
from .test_distributed import _free_port
from .test_errors import corrupt_all_views
from .test_pairs import samples_by_key

FORMATS = ("quat", "quat_raw", "matrix", "6d", "axis_angle")


def test_sequence_views_are_distinct_in_drawn_order_and_two_views_are_the_pairs():
    drawn = sequence_views(3, 1, "class0__0000", 6000, 5, 3)
    assert all(len(set(s)) == 3 and all(0 <= v < 5 for v in s) for s in drawn)
    assert len(Counter(drawn)) == 60 and min(Counter(drawn).values()) > 60  # every ordered triple, about 100 each
    assert all(sorted(s) == list(range(4)) for s in sequence_views(0, 0, "k", 50, 4, 4))  # K = V: a permutation
    draws = object_draws(7, 2, "class1__0003", 2 * 40)
    expected = []
    for sub in range(40):  # PairLoader's rule: a uniform, then b uniform among the other views
        a, b = draws[2 * sub] % 6, draws[2 * sub + 1] % 5
        expected.append((a, b + (b >= a)))
    assert sequence_views(7, 2, "class1__0003", 40, 6, 2) == pair_views(7, 2, "class1__0003", 40, 6) == expected


@pytest.mark.parametrize("rotation", FORMATS)
def test_two_views_give_pair_loaders_pairs(dataset, rotation):
    options = dict(seed=11, rotation=rotation, normalize=False, num_workers=1)
    pairs = list(PairLoader(dataset, 4, pairs_per_object=3, **options))
    sequences = list(SequenceLoader(dataset, 4, views=2, sequences_per_object=3, **options))
    assert len(pairs) == len(sequences) == 7  # 9 objects x 3 pairs, batches of 4
    for pair, sequence in zip(pairs, sequences):
        assert pair["key"] == sequence["key"] and torch.equal(pair["label"], sequence["label"])
        assert torch.equal(torch.stack([pair["index_a"], pair["index_b"]], 1), sequence["indices"])
        assert torch.equal(torch.stack([pair["view_a"], pair["view_b"]], 1), sequence["views"])  # pixel-identical
        assert torch.equal(pair["rel_rotation"], sequence["rel_rotation"][:, 0])
        assert torch.equal(pair["rel_latents"], sequence["rel_latents"][:, 0])
        assert torch.equal(torch.stack([pair["rot_a"], pair["rot_b"]], 1), sequence["rotations"])
        assert torch.equal(torch.stack([pair["latents_a"], pair["latents_b"]], 1), sequence["latents"])


@pytest.fixture
def counted_reads(monkeypatch):
    """(key, view) of every view image read, and the number of images decoded (inline loaders: one process)."""
    reads, decoded = [], []
    read, decode = ObjectFields.image, images.decode_cpu

    def counting_read(self, view):
        reads.append((self.key, view))
        return read(self, view)

    def counting_decode(*args, **kwargs):
        decoded.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(ObjectFields, "image", counting_read)
    monkeypatch.setattr(images, "decode_cpu", counting_decode)
    return reads, decoded


def test_four_views_read_only_their_views_with_every_consecutive_relative_rotation(dataset, counted_reads):
    reads, decoded = counted_reads
    loader = SequenceLoader(dataset, 5, views=4, sequences_per_object=2, seed=3, rotation="matrix", normalize=False)
    reads.clear()  # the constructor's look at the first object
    samples = samples_by_key(dataset)
    items, drawn = 0, []
    for batch in loader:
        count = len(batch["key"])
        assert batch["views"].shape == (count, 4, 3, 32, 32) and batch["views"].dtype == torch.uint8
        assert batch["rotations"].shape == (count, 4, 3, 3) and batch["latents"].shape == (count, 4, 7)
        assert batch["rel_rotation"].shape == (count, 3, 3, 3) and batch["rel_latents"].shape == (count, 3, 4)
        for i, key in enumerate(batch["key"]):
            sample, indices = samples[key], batch["indices"][i].tolist()
            assert len(set(indices)) == 4
            drawn += [(key, v) for v in indices]
            for j in range(3):
                a, b = indices[j], indices[j + 1]
                expected = sample.rotations[a].T @ sample.rotations[b]
                assert np.abs(batch["rel_rotation"][i, j].double().numpy() - expected).max() < 1e-6
                np.testing.assert_allclose(batch["rel_latents"][i, j, 0].item(), sample.latents[b, 3] - sample.latents[a, 3], atol=1e-6)
            for j, view in enumerate(indices):
                np.testing.assert_array_equal(batch["views"][i, j].permute(1, 2, 0).numpy(), decode_cpu(sample.images[view], None))
                np.testing.assert_allclose(batch["rotations"][i, j].numpy(), sample.rotations[view], atol=1e-6)
            items += 1
    assert items == 18  # 9 objects x 2 sequences
    assert len(decoded) == 4 * items and sorted(reads) == sorted(drawn)  # exactly the 4 views of each item


@pytest.mark.parametrize("rotation", ["quat", "quat_raw", "6d", "axis_angle"])
def test_every_rotation_format_between_consecutive_views(dataset, rotation):
    samples = samples_by_key(dataset)
    for batch in SequenceLoader(dataset, 9, views=3, seed=5, rotation=rotation):
        for i, key in enumerate(batch["key"]):
            indices, sample = batch["indices"][i].tolist(), samples[key]
            for j in range(2):
                a, b = indices[j], indices[j + 1]
                if rotation == "quat_raw":
                    expected = Rotation.from_euler("xyz", sample.latents[a, :3]).inv() * Rotation.from_euler("xyz", sample.latents[b, :3])
                    np.testing.assert_allclose(batch["rel_rotation"][i, j].numpy(), expected.as_quat(), atol=1e-6)
                    continue
                expected = Rotation.from_matrix(sample.rotations[a].T @ sample.rotations[b])
                got = batch["rel_rotation"][i, j].double().numpy()
                if rotation == "quat":
                    assert got[3] >= 0 and np.abs(got - expected.as_quat(canonical=True)).max() < 1e-6
                elif rotation == "6d":
                    np.testing.assert_allclose(got, expected.as_matrix()[:, :2].T.reshape(6), atol=1e-6)
                else:
                    np.testing.assert_allclose(Rotation.from_rotvec(got).as_matrix(), expected.as_matrix(), atol=1e-6)


# --- 3DIEBench-T: the 4x4 forms -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def translated(tmp_path_factory):
    """A 3DIEBench-T tree in the published layout (latents: 3 Euler angles, 4 scene factors, 3 translations in the
    object frame) and the dataset the converter makes of it."""
    base = tmp_path_factory.mktemp("3diebench-t")
    write_sie_tree(base / "tree", base / "splits", objects_per_synset=3, views=5, factors=10)
    settings = ConvertSettings(layout="3diebench-t", views=5)
    convert_source(base / "tree", base / "ds", settings, split_files=read_split_dir(str(base / "splits")), progress=False)
    return base


def equicaps_relative(tree, key: str, a: int, b: int, frame: str) -> np.ndarray:
    """EquiCaps' relative 4x4 matrix of views a, b read from the published files: per view, R from the Euler
    angles (scipy "xyz") and T from the translation latents, M = T @ R ("object" frame) or R @ T ("base" frame);
    then inv(M_a) @ M_b."""
    synset, object_id = key.split("__")
    matrices = []
    for view in (a, b):
        latent = np.load(tree / synset / object_id / f"latent_{view}.npy")
        rotate, move = np.eye(4), np.eye(4)
        rotate[:3, :3] = Rotation.from_euler("xyz", latent[:3]).as_matrix()
        move[:3, 3] = latent[-3:]
        matrices.append(move @ rotate if frame == "object" else rotate @ move)
    return np.linalg.inv(matrices[0]) @ matrices[1]


@pytest.mark.parametrize("frame", ["object", "base"])
def test_4x4_transforms_match_equicaps_composition(translated, frame):
    transform = f"matrix4_{frame}"
    loader = SequenceLoader(translated / "ds", 4, views=4, seed=2, transform=transform, rotation="matrix")
    assert loader.rel_latent_names[-3:] == ["trans_x", "trans_y", "trans_z"]  # translation factors: no second copy
    checked = 0
    for batch in loader:
        assert batch["rel_transform"].shape == (len(batch["key"]), 3, 4, 4)
        for i, key in enumerate(batch["key"]):
            indices = batch["indices"][i].tolist()
            for j in range(3):
                expected = equicaps_relative(translated / "tree", key, indices[j], indices[j + 1], frame)
                np.testing.assert_allclose(batch["rel_transform"][i, j].double().numpy(), expected, atol=1e-6)
                np.testing.assert_allclose(batch["rel_transform"][i, j, :3, :3].numpy(), batch["rel_rotation"][i, j].numpy(), atol=1e-6)
                checked += 1
    pair = next(iter(PairLoader(translated / "ds", 3, seed=2, transform=transform)))
    for i, key in enumerate(pair["key"]):
        expected = equicaps_relative(translated / "tree", key, int(pair["index_a"][i]), int(pair["index_b"][i]), frame)
        np.testing.assert_allclose(pair["rel_transform"][i].double().numpy(), expected, atol=1e-6)
    assert checked == 6 * 3  # 6 training objects (2 of 3 per synset), 3 consecutive pairs each


def test_4x4_transforms_need_translations(dataset):
    for loader in (PairLoader, SequenceLoader):
        with pytest.raises(UsageError, match=r"has no translations\.npy.*'3diebench-t' recipe") as caught:
            loader(dataset, 2, views=3, transform="matrix4_object") if loader is SequenceLoader else loader(
                dataset, 2, transform="matrix4_base")
        assert "\n" not in str(caught.value)
    with pytest.raises(UsageError, match="transform must be"):
        SequenceLoader(dataset, 2, views=3, transform="matrix3")


# --- resumption, ranks, errors ------------------------------------------------------------------------------------


def signature(batch):
    return batch["key"], batch["indices"].tolist()


def test_resume_mid_epoch_and_workers_give_the_same_sequences(dataset):
    options = dict(views=3, sequences_per_object=2, seed=9)
    uninterrupted = SequenceLoader(dataset, 2, num_workers=2, **options)
    uninterrupted.set_epoch(2)
    expected = list(uninterrupted)
    first = SequenceLoader(dataset, 2, num_workers=0, **options)
    first.set_epoch(2)
    before = []
    for batch in first:
        before.append(batch)
        if len(before) == 4:
            break
    resumed = SequenceLoader(dataset, 2, num_workers=1, **options)
    resumed.load_state_dict(first.state_dict())
    combined = before + list(resumed)
    assert [signature(b) for b in combined] == [signature(b) for b in expected] and len(expected) == 9
    for got, want in zip(combined, expected):
        assert torch.equal(got["views"], want["views"]) and torch.equal(got["rel_rotation"], want["rel_rotation"])
    assert resumed.state_dict()["epoch"] == 3
    again = SequenceLoader(dataset, 2, **options)
    again.set_epoch(3)
    assert [signature(b) for b in again] != [signature(b) for b in expected]  # another epoch, other sequences


def test_ranks_split_the_objects_and_keep_each_objects_sequences(dataset):
    whole = {key: indices for batch in SequenceLoader(dataset, 9, views=4, seed=6) for key, indices in zip(*signature(batch))}
    seen = []
    for rank in range(2):
        loader = SequenceLoader(dataset, 2, views=4, seed=6, rank=rank, world_size=2, drop_last=True)
        batches = list(loader)
        assert len(batches) == len(loader) == 2
        for batch in batches:
            for key, indices in zip(*signature(batch)):
                assert whole[key] == indices  # the draw depends on (seed, epoch, key), not on the rank
                seen.append(key)
    assert len(seen) == len(set(seen)) == 8


def _rank_main(rank: int, world_size: int, dataset: str, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # a forked child: no OpenMP pool inherited from the parent
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        loader = SequenceLoader(dataset, 2, views=3, seed=4)  # workers split batches as PairLoader's (test_resume)
        assert (loader.rank, loader.world_size) == (rank, world_size)
        batches = [signature(batch) for batch in loader]
        with open(f"{out}/rank{rank}.json", "w") as handle:
            json.dump({"batches": batches, "length": len(loader)}, handle)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks(dataset, tmp_path):
    # forked: spawned ranks would spend most of the test importing torch again
    mp.start_processes(_rank_main, args=(2, str(dataset), _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [len(r["batches"]) for r in ranks] == [r["length"] for r in ranks] == [3, 3]  # 9 objects padded to 5 a rank
    used = Counter(key for r in ranks for keys, _ in r["batches"] for key in keys)
    assert len(used) == 9 and sum(used.values()) == 10
    assert all(len(set(indices)) == 3 for r in ranks for _, batch in r["batches"] for indices in batch)


def test_corrupt_views_raise_naming_the_object_or_are_skipped(dataset, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    key = corrupt_all_views(copy)
    with pytest.raises(ShardError, match=rf"sample '{key}' view \d: cannot decode"):
        list(SequenceLoader(copy, 3, views=4, num_workers=0))
    loader = SequenceLoader(copy, 3, views=4, on_error="skip", num_workers=2)
    with pytest.warns(UserWarning, match=r"1 object\(s\) were skipped in epoch 0.*" + key):
        keys = [k for batch in loader for k in batch["key"]]
    assert loader.skipped == 1 and len(keys) == 8 and key not in keys


def test_bad_view_counts_are_named(dataset, tmp_path):
    with pytest.raises(UsageError, match="views must be at least 2"):
        SequenceLoader(dataset, 2, views=1)
    with pytest.raises(UsageError, match=r"shard train-000000\.tar sample 'class\d__\d+' has 6 view\(s\) but sequences need 7; pass views <= 6$"):
        SequenceLoader(dataset, 2, views=7)
    with pytest.raises(UsageError, match="sequences_per_object"):
        SequenceLoader(dataset, 2, views=2, sequences_per_object=0)
    single = write_samples(tmp_path / "single", [synthetic_sample("class0", 0, 0, views=1, size=16, seed=1)])
    with pytest.raises(UsageError, match=r"sample 'class0__0000' has 1 view\(s\) but pairs need 2$"):
        PairLoader(single, 2)
    samples = [synthetic_sample("class0", 0, index, views=6 if index != 1 else 3, size=16, seed=1) for index in range(3)]
    mixed = write_samples(tmp_path / "mixed", samples)
    with pytest.raises(ShardError, match=r"sample 'class0__0001' has 3 view\(s\) but sequences need 4 \(the first object has 6: view counts differ\)") as caught:
        list(SequenceLoader(mixed, 3, views=4, shuffle=False))
    assert "\n" not in str(caught.value)
    loader = SequenceLoader(mixed, 3, views=4, on_error="skip", shuffle=False)
    with pytest.warns(UserWarning, match="class0__0001"):
        (batch,) = list(loader)
    assert batch["key"] == ["class0__0000", "class0__0002"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(next(iter(SequenceLoader(mixed, 3, views=3)))["key"]) == 3  # different counts are fine when K fits


def test_channels_first_views_are_contiguous(dataset):
    batch = next(iter(SequenceLoader(dataset, 3, views=3, channels_last=False, size=16)))
    assert batch["views"].shape == (3, 3, 3, 16, 16) and batch["views"].is_contiguous()
    last = next(iter(SequenceLoader(dataset, 3, views=3, size=16)))
    assert last["views"][1, 2].permute(1, 2, 0).is_contiguous()  # each image channels-last in memory
    torch.testing.assert_close(batch["views"], last["views"])


@pytest.mark.gpu
def test_gpu_decoded_sequences_match_cpu(dataset):
    from orbitset.loaders.decode import GpuJpegDecoder

    if GpuJpegDecoder.available_backend() is None:
        pytest.skip("no GPU JPEG decoder installed (torchvision, nvidia-nvimgcodec or torchcodec)")
    cpu = list(SequenceLoader(dataset, 4, views=3, seed=5, normalize=False))
    gpu = list(SequenceLoader(dataset, 4, views=3, seed=5, normalize=False, device="cuda", decode="gpu", num_workers=2))
    for a, b in zip(cpu, gpu):
        assert a["key"] == b["key"] and b["views"].is_cuda and b["views"].shape == a["views"].shape
        assert (a["views"].float() - b["views"].cpu().float()).abs().mean().item() <= 2.0
        torch.testing.assert_close(a["rel_rotation"], b["rel_rotation"].cpu())


# --- the webdataset stage -----------------------------------------------------------------------------------------

wds = pytest.importorskip("webdataset")


def unbatched(loader) -> dict[str, list[dict]]:
    """key -> that object's records (every batch field but the key), in draw order."""
    out: dict[str, list[dict]] = {}
    for batch in loader:
        for row, key in enumerate(batch["key"]):
            out.setdefault(key, []).append({name: value[row] for name, value in batch.items() if name != "key"})
    return out


def assert_same_records(stage, shards, expected: dict[str, list[dict]]) -> None:
    got: dict[str, list[dict]] = {}
    for record in wds.WebDataset(shards, shardshuffle=False).compose(stage):
        got.setdefault(record["key"], []).append(record)
    assert got.keys() == expected.keys()
    for key, records in got.items():
        for mine, theirs in zip(records, expected[key], strict=True):
            assert mine.keys() - {"key"} == theirs.keys()
            for name, reference in theirs.items():
                value = torch.as_tensor(mine[name])
                assert value.shape == reference.shape, name
                torch.testing.assert_close(value, reference.to(value.dtype), atol=1e-6, rtol=0, msg=f"{key} {name}")


@pytest.mark.parametrize("rotation, transform", [("quat", None), ("quat_raw", "matrix4_object"), ("6d", "matrix4_base")])
def test_stages_match_the_loaders(translated, rotation, transform):
    from orbitset.loaders.wds import PairStage, SequenceStage

    data = translated / "ds"
    shards = [str(data / name) for name in load_manifest(data).splits["train"]]
    options = dict(seed=8, rotation=rotation, transform=transform, normalize=False)
    expected = unbatched(SequenceLoader(data, 4, views=4, sequences_per_object=2, shuffle=False, **options))
    assert len(expected) == 6 and all(len(records) == 2 for records in expected.values())
    assert_same_records(SequenceStage(views=4, sequences_per_object=2, **options), shards, expected)
    assert_same_records(PairStage(**options), shards, unbatched(PairLoader(data, 5, shuffle=False, **options)))


def test_stage_refuses_4x4_without_translations_and_too_short_samples(dataset):
    from orbitset.loaders.wds import SequenceStage

    shards = [str(dataset / load_manifest(dataset).splits["train"][0])]
    with pytest.raises(UsageError, match=r"sample 'class\d__\d+'.*has no translations\.npy.*'3diebench-t' recipe"):
        next(iter(wds.WebDataset(shards, shardshuffle=False).compose(SequenceStage(views=3, transform="matrix4_base"))))
    with pytest.raises(ShardError, match=r"has 6 view\(s\) but sequences need 7"):
        next(iter(wds.WebDataset(shards, shardshuffle=False).compose(SequenceStage(views=7))))
    with pytest.raises(UsageError, match="views must be at least 2"):
        SequenceStage(views=1)
