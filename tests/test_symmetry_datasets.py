"""Symmetry in datasets: recorded at render time (meta.json, symmetry.json, manifest, stats, card), added to a
converted dataset by `orbitset symmetry --annotate`, delivered by the loaders."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import trimesh

from orbitset.cli import main
from orbitset.datasets.symmetric import CLASSES, expected_group
from orbitset.manifests.model import load_manifest
from orbitset.shards import ShardReader
from orbitset.symmetry.records import SIDECAR_NAME, read_sidecar

ASSETS = Path(__file__).parent / "data" / "assets"


@pytest.fixture(scope="module")
def symmetric_dataset(tmp_path_factory) -> Path:
    from orbitset.render.dataset import render_dataset

    out = tmp_path_factory.mktemp("symmetric") / "data"
    render_dataset("3diebench", "procedural-symmetric:1", out, backend="raster", views=2, size=16, workers=1, seed=0,
                   progress=False, layers=())
    return out


def test_render_records_each_group_in_meta_sidecar_manifest_stats_and_card(symmetric_dataset: Path, capsys):
    manifest = load_manifest(symmetric_dataset)
    groups = {}
    for entry in manifest.shards:
        with ShardReader(symmetric_dataset / entry.name) as reader:
            for key in reader.keys():
                meta = json.loads(reader.read_field(key, "meta.json"))
                groups[key] = meta["symmetry"]["group"]
    assert groups == {f"{name}__0000": expected_group(name, 0) for name in CLASSES}
    expected_counts = {}
    for group in groups.values():
        expected_counts[group] = expected_counts.get(group, 0) + 1
    assert manifest.symmetry_groups == dict(sorted(expected_counts.items()))
    sidecar = read_sidecar(symmetric_dataset)
    assert {k: v["group"] for k, v in sidecar["objects"].items()} == groups
    assert main(["stats", str(symmetric_dataset)]) == 0
    assert "symmetry groups (objects): " + ", ".join(f"{g} {n}" for g, n in sorted(expected_counts.items())) in capsys.readouterr().out
    assert main(["card", str(symmetric_dataset), "--no-sheet"]) == 0
    card = (symmetric_dataset / "README.md").read_text()
    assert "## Symmetry" in card and "| C4 | 1 |" in card and "| SO3 | 1 |" in card and SIDECAR_NAME in card


def test_old_manifests_without_symmetry_still_load(symmetric_dataset: Path, tmp_path: Path):
    data = json.loads((symmetric_dataset / "manifest.json").read_text())
    del data["symmetry_groups"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(tmp_path).symmetry_groups is None


def _shapenet_tree(root: Path, objects: list[tuple[str, str]]) -> dict[str, str]:
    """A ShapeNetCore-layout tree holding, for the converted objects, alternately a can (Dinf) and the duck (C1)."""
    expected = {}
    can = trimesh.creation.cylinder(radius=0.3, height=1.0, sections=64)
    for index, (synset, object_id) in enumerate(objects):
        models = root / synset / object_id / "models"
        models.mkdir(parents=True)
        if index % 2 == 0:
            can.export(models / "model_normalized.obj")
            expected[f"{synset}__{object_id}"] = "Dinf"
        else:
            shutil.copy(ASSETS / "duck.obj", models / "model_normalized.obj")
            for name in ("duck.mtl", "duckCM.png"):
                shutil.copy(ASSETS / name, models / name)
            expected[f"{synset}__{object_id}"] = "C1"
    return expected


def test_annotate_adds_groups_to_a_converted_dataset_without_touching_shards(tmp_path: Path, capsys):
    from orbitset.datasets.convert import ConvertSettings, convert_source, read_split_dir
    from orbitset.datasets.sie_synthetic import write_sie_tree

    tree = write_sie_tree(tmp_path / "tree", tmp_path / "splits", objects_per_synset=2, views=2, size=8,
                          synsets=("02876657", "02946921"))
    out = tmp_path / "converted"
    convert_source(tmp_path / "tree", out, ConvertSettings(views=2, objects_per_shard=4),
                   split_files=read_split_dir(str(tmp_path / "splits")), progress=False)
    objects = sorted((s, o) for listed in tree.splits.values() for s, o in listed)
    expected = _shapenet_tree(tmp_path / "shapenet", objects)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.tar")}
    manifest_before = (out / "manifest.json").read_bytes()

    assert main(["symmetry", "--annotate", str(out), "--assets", f"shapenet:{tmp_path / 'shapenet'}",
                 "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    sidecar = read_sidecar(out)
    assert {key: record["group"] for key, record in sidecar["objects"].items()} == expected
    assert sidecar["groups"] == {"C1": 2, "Dinf": 2}
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.tar")} == before
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert not list(out.glob("*.partial"))


def test_annotate_with_the_wrong_source_says_so(symmetric_dataset: Path, tmp_path: Path, capsys):
    (tmp_path / "meshes").mkdir()
    trimesh.creation.box().export(tmp_path / "meshes" / "other.obj")
    assert main(["symmetry", "--annotate", str(symmetric_dataset), "--assets", f"folder:{tmp_path / 'meshes'}",
                 "--no-progress"]) == 2
    assert "none of the 7 objects" in capsys.readouterr().err


def test_pair_loader_delivers_each_items_symmetry(symmetric_dataset: Path):
    from orbitset.loaders import PairLoader

    seen = {}
    for split in load_manifest(symmetric_dataset).splits:
        for batch in PairLoader(symmetric_dataset, batch_size=4, split=split, symmetry=True, normalize=False):
            assert len(batch["symmetry"]) == len(batch["key"])
            seen.update({key: record["group"] for key, record in zip(batch["key"], batch["symmetry"])})
    assert seen == {f"{name}__0000": expected_group(name, 0) for name in CLASSES}
    plain = next(iter(PairLoader(symmetric_dataset, batch_size=4, split=None, normalize=False)))
    assert "symmetry" not in plain


def test_records_are_cached_by_content(tmp_path, monkeypatch):
    from orbitset.datasets.symmetric import SymmetricSource
    from orbitset.symmetry import records

    monkeypatch.setenv("ORBITSET_SYMMETRY_CACHE", str(tmp_path / "cache"))
    source = SymmetricSource(1)
    can = source.load(source.objects()[CLASSES.index("can")])
    first = records.record_of_asset(can, "can/0")
    assert first["group"] == "Dinf" and len(list((tmp_path / "cache").glob("*.json"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("detected again")

    monkeypatch.setattr(records, "record_of", refuse)
    assert records.record_of_asset(can, "can/0") == first  # same content: from the cache
    repainted = source.load(source.objects()[CLASSES.index("can")], appearance="uniform")
    with pytest.raises(AssertionError, match="detected again"):
        records.record_of_asset(repainted, "can/0")  # other appearance: another key
