"""Fixtures of the manifests tests: a tiny published dataset built on the fly, and crafted (unsafe) shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from orbitset.manifests.model import Factor, Manifest, ShardEntry, write_manifest
from orbitset.integrity import file_sha256
from orbitset.testing import synthetic_sample, write_synthetic_dataset
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """2 classes x 4 objects x 3 views of 16 px: train in 3 shards, val in 1, plus manifest.json."""
    out = tmp_path / "published"
    write_synthetic_dataset(out, classes=2, objects_per_class=4, views=3, size=16, objects_per_shard=2)
    return out


def write_crafted_shard(directory: Path, name: str, evil: str) -> Path:
    """A dataset folder holding one shard with a valid sample plus one unsafe member, listed with its true size and
    sha256 (so only reading the samples can refuse it). `evil`: dotdot, symlink, pickle, pyd, object-npy."""
    sample = synthetic_sample("class0", 0, 0, views=2, size=16, seed=0).encode()
    key = sample.pop("__key__")
    if evil == "object-npy":
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
        sample["latents.npy"] = buffer.getvalue()
    path = directory / name
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for field, data in sorted(sample.items()):
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if evil == "dotdot":
            info = tarfile.TarInfo("../escape.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
        elif evil == "symlink":
            info = tarfile.TarInfo(f"{key}.link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        elif evil in ("pickle", "pyd"):
            payload = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00."  # a pickle stream
            info = tarfile.TarInfo(f"{key}.payload.{'pkl' if evil == 'pickle' else 'pyd'}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    manifest = Manifest(
        name="crafted",
        shards=[ShardEntry(name, path.stat().st_size, file_sha256(path), 1, 2, "train")],
        classes=["class0"],
        factors=[Factor(n, u, lo, hi) for n, u, lo, hi in FACTORS_3DIEBENCH],
    )
    write_manifest(manifest, directory)
    return path

