"""The synthetic dataset writer streams: it writes, byte for byte, what building every sample first and then writing
them split by split writes, and shows progress when asked."""

from __future__ import annotations

import json
from pathlib import Path

from orbitset.shards import ShardWriter
from orbitset.testing import synthetic_sample, write_synthetic_dataset


def _written_all_at_once(out: Path, classes: int, objects_per_class: int, views: int, size: int, objects_per_shard: int,
                         seed: int, points: int) -> None:
    """Shards and sidecars the direct way: every sample built in memory, then train's written, then val's."""
    by_split: dict[str, list] = {"train": [], "val": []}
    for class_index in range(classes):
        for object_index in range(objects_per_class):
            split = "val" if object_index % 4 == 3 else "train"
            by_split[split].append(synthetic_sample(f"class{class_index}", class_index, object_index, views, size, seed,
                                                    points))
    with ShardWriter(out, objects_per_shard=objects_per_shard, identity={"seed": seed}) as writer:
        for split, samples in by_split.items():
            for sample in samples:
                writer.add(split, sample.key, sample.encode())


def test_streamed_dataset_is_byte_identical_to_writing_all_samples_at_once(tmp_path: Path, capsys):
    options = dict(classes=3, objects_per_class=7, views=4, size=16, objects_per_shard=3, seed=5, points=8)
    streamed, direct = tmp_path / "streamed", tmp_path / "direct"
    manifest = write_synthetic_dataset(streamed, val_fraction=0.25, progress=True, **options)
    assert "write synthetic" in capsys.readouterr().err
    _written_all_at_once(direct, **options)
    files = sorted(p.name for p in direct.iterdir())
    assert files and sorted(p.name for p in streamed.iterdir()) == sorted(files + ["manifest.json"])
    for name in files:
        assert (streamed / name).read_bytes() == (direct / name).read_bytes(), name
    listed = json.loads((streamed / "manifest.json").read_text())["shards"]
    assert [entry["name"] for entry in listed] == [name for name in files if name.endswith(".tar")]
    assert manifest.totals()["objects"] == 21
