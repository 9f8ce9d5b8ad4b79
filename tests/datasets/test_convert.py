"""3DIEBench conversion and sie-layout export on a synthetic tree with the original file names and .npy formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from orbitset import geometry
from orbitset.cli import main
from orbitset.datasets.convert import convert_3diebench, export_sie_layout, read_throughput, scan_tree
from orbitset.errors import AssetError
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import decoded_samples, verify_dataset
from orbitset.testing import encode_jpeg, write_synthetic_dataset

VIEWS = 3
# created in an order that is not the sorted one, so a label that follows creation order would be caught
SYNSETS = ("04379243", "02691156", "03001627")
SPLITS = {"train": [(0, "1a2b"), (1, "ffe0"), (2, "c0de"), (0, "beef")], "val": [(1, "0a0a"), (2, "d00d")]}


def _write_object(root: Path, synset: str, object_id: str, rng: np.random.Generator, factors: int) -> None:
    folder = root / synset / object_id
    folder.mkdir(parents=True)
    for i in range(VIEWS):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        (folder / f"image_{i}.jpg").write_bytes(encode_jpeg(pixels))
        latent = rng.uniform(-1.5, 1.5, factors)  # float64, shape (F,), as the original generator saves it
        np.save(folder / f"latent_{i}.npy", latent)


def build_tree(root: Path, factors: int = 7) -> Path:
    """The original layout: SYNSET/OBJ/image_i.jpg + latent_i.npy, and split + label files beside it."""
    rng = np.random.default_rng(0)
    sorted_synsets = sorted(SYNSETS)
    for split, entries in SPLITS.items():
        for synset_index, object_id in entries:
            _write_object(root, SYNSETS[synset_index], object_id, rng, factors)
        np.save(root / f"{split}_images.npy", np.array([f"/{SYNSETS[s]}/{o}/" for s, o in entries]))
        np.save(root / f"{split}_labels.npy", np.array([sorted_synsets.index(SYNSETS[s]) for s, _ in entries]))
    return root


def test_convert_then_export_is_byte_identical(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    report = convert_3diebench(tree, tmp_path / "ds", views=VIEWS, workers=1, objects_per_shard=3, progress=False)
    manifest = report.manifest
    assert manifest.failures == []
    assert manifest.classes == sorted(SYNSETS)
    assert {split: sum(e.objects for e in manifest.shards if e.split == split) for split in SPLITS} == {"train": 4, "val": 2}
    assert verify_dataset(tmp_path / "ds", deep=True).ok
    assert report.throughput.images == 6 * VIEWS and report.throughput.bytes > 0

    for entry in manifest.shards:
        for sample in decoded_samples(tmp_path / "ds" / entry.name):
            synset, object_id = sample.meta["source_id"].split("/")
            assert sample.label == sorted(SYNSETS).index(synset), "class index = position in the sorted synsets"
            assert sample.meta["channel_order"] == "bgr"
            assert sample.key == f"{synset}__{object_id}"
            folder = tree / synset / object_id
            assert sample.images == [(folder / f"image_{i}.jpg").read_bytes() for i in range(VIEWS)]
            np.testing.assert_array_equal(sample.rotations, geometry.euler_to_matrix(sample.latents[:, :3]))

    out = tmp_path / "exported"
    export_sie_layout(tmp_path / "ds", out, progress=False)
    originals = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == originals
    for relative in originals:
        if relative.suffix == ".jpg":
            assert (out / relative).read_bytes() == (tree / relative).read_bytes(), relative
        elif relative.parent != Path("."):
            exported, original = np.load(out / relative), np.load(tree / relative)
            assert exported.dtype == original.dtype == np.float64 and exported.shape == original.shape == (7,)
            np.testing.assert_array_equal(exported, original)
    for split in SPLITS:
        original_pairs = dict(zip(np.load(tree / f"{split}_images.npy"), np.load(tree / f"{split}_labels.npy")))
        exported_pairs = dict(zip(np.load(out / f"{split}_images.npy"), np.load(out / f"{split}_labels.npy")))
        assert exported_pairs == original_pairs


def test_output_does_not_depend_on_worker_count(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    digests = []
    for workers in (1, 2):
        report = convert_3diebench(tree, tmp_path / f"w{workers}", views=VIEWS, workers=workers, objects_per_shard=2, progress=False)
        digests.append([(e.name, e.sha256) for e in report.manifest.shards])
    assert digests[0] == digests[1]


def test_objects_with_missing_views_or_unreadable_files_are_reported_not_fatal(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    (tree / SYNSETS[0] / "1a2b" / "image_2.jpg").unlink()
    np.save(tree / SYNSETS[1] / "ffe0" / "latent_1.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    (tree / SYNSETS[2] / "c0de" / "image_0.jpg").write_bytes(b"GIF89a not a jpeg")
    np.save(tree / SYNSETS[2] / "d00d" / "latent_0.npy", np.zeros(5))
    (tree / SYNSETS[0] / "not-in-any-split").mkdir()
    report = convert_3diebench(tree, tmp_path / "ds", views=VIEWS, workers=1, progress=False)
    reasons = {f.object: f.reason for f in report.manifest.failures}
    assert "missing image_2.jpg" in reasons[f"{SYNSETS[0]}/1a2b"]
    assert "object arrays are refused" in reasons[f"{SYNSETS[1]}/ffe0"]
    assert "not a JPEG" in reasons[f"{SYNSETS[2]}/c0de"]
    assert "shape (5,)" in reasons[f"{SYNSETS[2]}/d00d"]
    assert "not listed in any split" in reasons[f"{SYNSETS[0]}/not-in-any-split"]
    assert report.manifest.totals()["objects"] == 2
    assert verify_dataset(tmp_path / "ds", deep=True).ok


def test_labels_that_break_the_sorted_synset_rule_are_refused(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    labels = np.load(tree / "train_labels.npy")
    np.save(tree / "train_labels.npy", (labels + 1) % 3)
    with pytest.raises(AssetError, match="sorted synsets"):
        scan_tree(tree, views=VIEWS)


def test_split_files_are_never_unpickled(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    np.save(tree / "val_images.npy", np.array(["/x/y/", None], dtype=object), allow_pickle=True)
    with pytest.raises(AssetError, match="never unpickled"):
        scan_tree(tree, views=VIEWS)


def test_without_split_files_everything_goes_to_split_all(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    elsewhere = tmp_path / "sie-data"
    elsewhere.mkdir()
    for path in tree.glob("*.npy"):
        path.rename(elsewhere / path.name)
    assert {o.split for o in scan_tree(tree, views=VIEWS).objects} == {"all"}
    assert {o.split for o in scan_tree(tree, views=VIEWS, splits_from=elsewhere).objects} == {"train", "val"}


def test_3diebench_t_stores_translations_in_the_world_frame(tmp_path: Path):
    tree = build_tree(tmp_path / "tree", factors=10)
    report = convert_3diebench(tree, tmp_path / "ds", layout="3diebench-t", views=VIEWS, workers=1, progress=False)
    assert [f.name for f in report.manifest.factors][7:] == ["trans_x", "trans_y", "trans_z"]
    samples = [s for e in report.manifest.shards for s in decoded_samples(tmp_path / "ds" / e.name)]
    assert len(samples) == 6
    for sample in samples:
        assert sample.latents.shape == (VIEWS, 10)
        expected = np.einsum("vij,vj->vi", sample.rotations, sample.latents[:, 7:10])
        np.testing.assert_allclose(sample.translations, expected)
    # a 7-latent tree is not a 3DIEBench-T tree: every object is reported
    plain = build_tree(tmp_path / "plain")
    failed = convert_3diebench(plain, tmp_path / "bad", layout="3diebench-t", views=VIEWS, workers=1, progress=False)
    assert len(failed.manifest.failures) == 6 and all("10 float latents" in f.reason for f in failed.manifest.failures)


def test_export_of_an_orbitset_rendered_dataset_uses_class_names(tmp_path: Path):
    write_synthetic_dataset(tmp_path / "ds", classes=2, objects_per_class=4, views=2, size=8)
    report = export_sie_layout(tmp_path / "ds", tmp_path / "tree", progress=False)
    assert report.objects == 8 and report.splits == {"train": 6, "val": 2}
    assert sorted(p.name for p in (tmp_path / "tree").iterdir() if p.is_dir()) == ["class0", "class1"]
    assert sorted(np.load(tmp_path / "tree" / "val_images.npy")) == ["/class0/0003/", "/class1/0003/"]
    assert sorted(np.load(tmp_path / "tree" / "val_labels.npy")) == [0, 1]
    latent = np.load(tmp_path / "tree" / "class1" / "0001" / "latent_1.npy")
    assert latent.shape == (7,) and latent.dtype == np.float64


def test_read_baseline_reads_the_same_files(tmp_path: Path):
    tree = build_tree(tmp_path / "tree")
    scanned = scan_tree(tree, views=VIEWS)
    baseline = read_throughput(scanned, workers=2)
    on_disk = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and p.parent != tree)
    assert baseline.images == 6 * VIEWS and baseline.bytes == on_disk


def test_cli_convert_and_export(tmp_path: Path, capsys):
    tree = build_tree(tmp_path / "tree")
    out = tmp_path / "ds"
    assert main(["convert", "3diebench", str(tree), "--out", str(out), "--views", str(VIEWS), "-w", "1", "--compare-read"]) == 0
    printed = capsys.readouterr().out
    assert "images/s" in printed and "MB/s" in printed and "conversion / plain read" in printed
    assert load_manifest(out).totals()["objects"] == 6
    assert main(["export", "sie-layout", str(out), "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "val_labels.npy").exists()
    assert main(["convert", "3diebench", str(tmp_path / "ds"), "--out", str(tmp_path / "x"), "--splits-from", str(tmp_path)]) == 2
    assert "split files" in capsys.readouterr().err
    assert math.isfinite(load_manifest(out).factors[0].low)
