"""Tiny datasets for the loader tests, built on the fly."""

from __future__ import annotations

import io

import numpy as np
import pytest

from orbitset.manifests.model import Factor
from orbitset.schema import ObjectSample
from orbitset.shards import ShardWriter, write_shard
from orbitset.testing import synthetic_sample, write_synthetic_dataset
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """3 classes x 4 objects x 6 views of 32 px: train = 9 objects in 3 shards (4, 4, 1), val = 3 objects in 1 shard."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(out, classes=3, objects_per_class=4, views=6, size=32, objects_per_shard=4, seed=3)
    return out


def write_samples(out, samples: list[ObjectSample], per_shard: int = 4, split: str = "train"):
    """Write `samples` as shards + manifest into `out` (for datasets the synthetic writer does not make)."""
    writer = ShardWriter(out, objects_per_shard=per_shard)
    for sample in samples:
        writer.add(split, sample.key, sample.encode())
    factors = [Factor(n, u, lo, hi) for n, u, lo, hi in FACTORS_3DIEBENCH]
    writer.write_manifest(name="custom", classes=["class0", "class1"], factors=factors)
    return out


@pytest.fixture(scope="session")
def point_dataset(tmp_path_factory):
    """4 objects with 4 views of 16 px and 64 surface points (xyz + normal) each."""
    samples = []
    for index in range(4):
        sample = synthetic_sample(f"class{index % 2}", index % 2, index, views=4, size=16, seed=5)
        rng = np.random.default_rng(index)
        xyz = rng.normal(size=(64, 3))
        normals = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
        sample.points = np.concatenate([xyz, normals], axis=1).astype(np.float32)
        samples.append(sample)
    return write_samples(tmp_path_factory.mktemp("points"), samples)


def shard_with_bad_latents(tmp_path, latents: np.ndarray):
    """A 3-object shard of 4-view samples whose middle object's ``latents.npy`` is `latents`; (shard path, keys)."""
    fields = [synthetic_sample("class0", 0, index, views=4, size=16, seed=1).encode() for index in range(3)]
    buffer = io.BytesIO()
    np.save(buffer, latents)
    fields[1]["latents.npy"] = buffer.getvalue()
    shard = tmp_path / "train-000000.tar"
    write_shard(shard, fields)
    return shard, [f["__key__"] for f in fields]
