"""Generic readers read orbitset shards as they are: Hugging Face `datasets` ("webdataset" builder) and plain
`webdataset.WebDataset` return the samples, images and latents that orbitset's own loader returns."""

from __future__ import annotations


import numpy as np
import pytest

from orbitset.loaders import ViewLoader
from orbitset.manifests.model import load_manifest


def orbitset_views(root, split: str) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """key -> (views (V, H, W, 3) uint8, latents (V, F), label) as orbitset's ViewLoader returns them."""
    loader = ViewLoader(root, batch_size=64, split=split, mode="all", normalize=False, shuffle=False)
    out = {}
    for batch in loader:
        views = batch["views"].permute(0, 1, 3, 4, 2).numpy()
        for row, key in enumerate(batch["key"]):
            out[key] = (views[row], batch["latents"][row].numpy(), int(batch["label"][row]))
    return out


@pytest.mark.parametrize("split", ["train", "val"])
def test_hugging_face_webdataset_builder(rendered, split, tmp_path):
    datasets = pytest.importorskip("datasets")
    manifest = load_manifest(rendered)
    files = [str(rendered / name) for name in manifest.splits[split]]
    rows = datasets.load_dataset("webdataset", data_files={split: files}, split=split, cache_dir=str(tmp_path))
    expected = orbitset_views(rendered, split)
    assert rows.num_rows == len(expected) == sum(s.objects for s in manifest.shards_for(split))
    for row in rows:
        views, latents, label = expected[row["__key__"]]
        assert row["cls"] == label == row["meta.json"]["class_index"]
        assert np.array_equal(np.asarray(row["latents.npy"], dtype=np.float32), latents)
        for index in range(len(views)):
            assert np.array_equal(np.asarray(row[f"{index:03d}.jpg"].convert("RGB")), views[index])


def test_plain_webdataset(rendered):
    wds = pytest.importorskip("webdataset")
    manifest = load_manifest(rendered)
    shards = [str(rendered / name) for name in manifest.splits["train"]]
    expected = orbitset_views(rendered, "train")
    seen = set()
    for sample in wds.WebDataset(shards, shardshuffle=False).decode("rgb8"):
        views, latents, label = expected[sample["__key__"]]
        assert sample["cls"] == label
        assert np.array_equal(sample["latents.npy"].astype(np.float32), latents)
        assert np.array_equal(np.stack([sample[f"{i:03d}.jpg"] for i in range(len(views))]), views)
        seen.add(sample["__key__"])
    assert seen == set(expected)
