"""croissant.json: mlcroissant validates it without issues and reads the records it can decode (classes, views)."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import pytest

from orbitset.manifests.model import load_manifest
from orbitset.shards import ShardReader

mlc = pytest.importorskip("mlcroissant")


def test_mlcroissant_validates_without_issues(published):
    dataset = mlc.Dataset(str(published / "croissant.json"))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()


def test_shards_members_and_factor_fields(published):
    data = json.loads((published / "croissant.json").read_text())
    manifest = load_manifest(published)
    assert data["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    objects = {d["name"]: d for d in data["distribution"] if d["@type"] == "cr:FileObject"}
    assert {name: d["sha256"] for name, d in objects.items()} == {s.name: s.sha256 for s in manifest.shards}
    sets = {d["includes"] for d in data["distribution"] if d["@type"] == "cr:FileSet"}
    assert {"*.jpg", "*.latents.npy", "*.rotations.npy", "*.points.npy", "*.mask.png", "*.cls"} <= sets
    samples = next(r for r in data["recordSet"] if r["name"] == "samples")
    factor_fields = [f["name"] for f in samples["field"]][1:]
    assert factor_fields == [f.name for f in manifest.factors]
    assert data["rai:dataCollectionMissingData"].startswith("None")
    assert "Garrido" in data["citeAs"]


def test_mlcroissant_reads_classes_and_view_images(published):
    from PIL import Image

    dataset = mlc.Dataset(str(published / "croissant.json"))
    classes = [(r["classes/index"], r["classes/name"]) for r in dataset.records("classes")]
    manifest = load_manifest(published)
    assert classes == list(enumerate(manifest.classes))
    views = list(itertools.islice(dataset.records("views"), 1000))
    assert len(views) == manifest.totals()["views"]
    first = views[0]
    key = first["views/key"].decode()
    shard = next(s for s in manifest.shards if key in ShardReader(published / s.name).keys())
    with ShardReader(published / shard.name) as reader:
        stored = reader.read_field(key, f"{first['views/view_index']:03d}.jpg")
    assert np.array_equal(np.asarray(first["views/image"]), np.asarray(Image.open(io.BytesIO(stored)).convert("RGB")))
