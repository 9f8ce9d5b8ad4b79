"""A tiny dataset rendered for real (raster backend) with its card and Croissant metadata, shared by the publish
and interop tests."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# the Hugging Face libraries must never reach the network in tests
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# mlcroissant caches what it extracts from archives by their name: a session of its own, or it serves the shards of
# an earlier dataset rendered under the same names (read when mlcroissant is imported)
CROISSANT_CACHE = tempfile.mkdtemp(prefix="orbitset-croissant-")
os.environ["CROISSANT_CACHE"] = CROISSANT_CACHE


@pytest.fixture(scope="session", autouse=True)
def _croissant_cache():
    yield
    shutil.rmtree(CROISSANT_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """3DIEBench recipe on procedural meshes: 6 objects x 4 views of 32 px, 2 objects per shard (train 4, val 2),
    with masks and point clouds (the recipe's layers); about 15 s on one core."""
    from orbitset.render.dataset import render_dataset

    out = tmp_path_factory.mktemp("rendered")
    render_dataset("3diebench", "procedural", out, backend="raster", objects=6, views=4, size=32, workers=1, seed=0,
                   progress=False, objects_per_shard=2)
    return out


@pytest.fixture(scope="session")
def published(rendered):
    """`rendered` with README.md (the card, with its contact sheet) and croissant.json written by `orbitset card`."""
    from orbitset.cli import main

    assert main(["card", str(rendered)]) == 0
    return rendered
