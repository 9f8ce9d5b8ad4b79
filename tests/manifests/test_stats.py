"""stats: counts per class and split, factor and relative-angle histograms (text and PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from orbitset import geometry
from orbitset.cli import main
from orbitset.manifests.stats import dataset_stats
from orbitset.manifests.verify import decoded_samples
from orbitset.manifests.model import load_manifest


def test_counts_and_histograms_match_the_samples(dataset: Path):
    stats = dataset_stats(dataset)
    assert dict(stats.counts) == {("train", "class0"): 3, ("train", "class1"): 3, ("val", "class0"): 1, ("val", "class1"): 1}
    assert stats.views == 8 * 3
    assert [h.name for h in stats.factors] == [f.name for f in load_manifest(dataset).factors]
    assert all(int(h.counts.sum()) == 24 for h in stats.factors)
    floor = stats.factors[3]
    assert (floor.edges[0], floor.edges[-1]) == (0.0, 1.0)
    samples = [s for e in load_manifest(dataset).shards for s in decoded_samples(dataset / e.name)]
    floor_hues = np.concatenate([s.latents[:, 3] for s in samples])
    assert np.array_equal(floor.counts, np.histogram(floor_hues, bins=len(floor.counts), range=(0.0, 1.0))[0])
    angles = np.concatenate([geometry.geodesic_angle(s.rotations[[0, 0, 1]], s.rotations[[1, 2, 2]]) for s in samples])
    assert int(stats.relative_angle.counts.sum()) == 8 * 3  # 3 pairs of 3 views per object
    assert math.isclose(stats.relative_angle.mean, float(angles.mean()))
    assert dict(dataset_stats(dataset, split="val").counts) == {("val", "class0"): 1, ("val", "class1"): 1}


def test_cli_prints_text_and_writes_a_png(dataset: Path, tmp_path: Path, capsys):
    png = tmp_path / "figure.png"
    assert main(["stats", str(dataset), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "class0" in text and "floor_hue" in text and "relative" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(png).size) > 100
