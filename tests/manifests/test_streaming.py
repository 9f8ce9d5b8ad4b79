"""The commands that read every sample stream: stats gives the histograms of all values binned at once, its memory
does not grow with the number of objects, and stats and card show progress."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np

from orbitset import geometry
from orbitset.cli import main
from orbitset.manifests.model import load_manifest
from orbitset.manifests.stats import BATCH, Histogram, dataset_stats
from orbitset.schema import load_json, load_npy
from orbitset.shards import ShardReader
from orbitset.testing import write_synthetic_dataset


def _all_at_once(dataset: Path) -> tuple[dict, list[Histogram], Histogram]:
    """Counts and histograms computed the direct way: every value of the dataset in memory, binned once."""
    manifest = load_manifest(dataset)
    counts: dict = {}
    latents, angles = [], []
    for entry in manifest.shards:
        with ShardReader(dataset / entry.name) as reader:
            for key in reader.keys():
                meta = load_json(reader.read_field(key, "meta.json"), key)
                counts[(entry.split, meta["class_name"])] = counts.get((entry.split, meta["class_name"]), 0) + 1
                latents.append(load_npy(reader.read_field(key, "latents.npy"), key))
                rotations = load_npy(reader.read_field(key, "rotations.npy"), key)
                first, second = np.triu_indices(len(rotations), k=1)
                angles.append(np.asarray(geometry.geodesic_angle(rotations[first], rotations[second])))
    table = np.concatenate(latents)
    factors = [Histogram.of(f.name, f.unit, table[:, i], f.low, f.high) for i, f in enumerate(manifest.factors)]
    return counts, factors, Histogram.of("relative angle", "rad", np.concatenate(angles), 0.0, math.pi)


def _assert_same(streamed: Histogram, direct: Histogram) -> None:
    assert streamed.name == direct.name
    assert np.array_equal(streamed.edges, direct.edges) and np.array_equal(streamed.counts, direct.counts)
    assert (streamed.minimum, streamed.maximum) == (direct.minimum, direct.maximum)
    assert math.isclose(streamed.mean, direct.mean, rel_tol=1e-12)


def test_stats_equal_binning_every_value_at_once_also_for_factors_without_a_range(tmp_path: Path):
    dataset = tmp_path / "data"
    write_synthetic_dataset(dataset, classes=3, objects_per_class=3 * BATCH // 4, views=5, size=8, objects_per_shard=40)
    manifest_file = dataset / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["factors"][3]["low"] = manifest["factors"][3]["high"] = None  # binned over what is observed
    manifest["factors"][5]["high"] = None
    manifest_file.write_text(json.dumps(manifest))
    counts, factors, angle = _all_at_once(dataset)
    stats = dataset_stats(dataset)
    assert dict(stats.counts) == counts and stats.views == 3 * (3 * BATCH // 4) * 5
    assert len(stats.factors) == len(factors) == 7
    for streamed, direct in zip(stats.factors, factors):
        _assert_same(streamed, direct)
    _assert_same(stats.relative_angle, angle)
    assert stats.factors[3].edges[0] == stats.factors[3].minimum  # the observed range, not the recorded one


def _stats_peak(dataset: Path) -> int:
    tracemalloc.start()
    try:
        dataset_stats(dataset)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stats_memory_does_not_grow_with_the_number_of_objects(tmp_path: Path):
    small, large = tmp_path / "small", tmp_path / "large"
    objects = 2 * BATCH  # per class: 4 * BATCH objects in all, then four times as many
    write_synthetic_dataset(small, classes=2, objects_per_class=objects, views=12, size=8, objects_per_shard=BATCH)
    write_synthetic_dataset(large, classes=2, objects_per_class=4 * objects, views=12, size=8, objects_per_shard=BATCH)
    dataset_stats(small)  # first use imports what the angles need
    growth = (_stats_peak(large) - _stats_peak(small)) / (2 * 3 * objects)
    # keeping each object's latents (12 x 7 float64) and pair angles (66 float64) would cost over 1,200 bytes each
    assert growth < 300, f"stats peak memory grows by {growth:.0f} bytes per object"


def test_stats_and_card_show_progress_on_stderr(tmp_path: Path, capsys):
    dataset = tmp_path / "data"
    write_synthetic_dataset(dataset, classes=2, objects_per_class=3, views=3, size=16, objects_per_shard=2)
    assert main(["stats", str(dataset), "--png", str(tmp_path / "stats.png")]) == 0
    err = capsys.readouterr().err
    assert "stats" in err and "6/6" in err and "obj/s" in err
    assert main(["card", str(dataset), "--no-sheet"]) == 0
    err = capsys.readouterr().err
    assert "card" in err and "6/6" in err and "obj/s" in err
