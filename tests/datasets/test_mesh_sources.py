"""Asset sources for mesh collections: each layout is built as a tiny fake tree on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from orbitset.datasets.mesh_sources import (
    FolderSource,
    ModelNetSource,
    ObjaverseSource,
    ShapeNetSource,
    load_mesh_file,
    open_source,
)
from orbitset.datasets.sources import AssetSource
from orbitset.errors import AssetError

SYNSETS = {"04379243": "table", "02691156": "airplane,aeroplane,plane", "03001627": "chair"}


def _box(path: Path, extents=(1.0, 2.0, 4.0), offset=(3.0, -1.0, 2.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(offset)
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)
    return mesh


def _shapenet(root: Path, per_synset: int = 2, taxonomy: bool = False) -> dict[str, list[str]]:
    ids = {}
    for synset in SYNSETS:
        ids[synset] = [f"{synset[-3:]}abc{i}" for i in range(per_synset)]
        for object_id in ids[synset]:
            _box(root / synset / object_id / "models" / "model_normalized.obj", extents=(0.2, 0.5, 0.9))
    if taxonomy:
        entries = [{"synsetId": s, "name": n, "children": [], "numInstances": per_synset} for s, n in SYNSETS.items()]
        entries.append({"synsetId": "99999999", "name": "not in tree", "children": []})
        (root / "taxonomy.json").write_text(json.dumps(entries))
    return ids


def test_shapenet_lists_objects_with_synset_classes_in_synset_order(tmp_path):
    ids = _shapenet(tmp_path)
    (tmp_path / "02691156" / "notes.txt").write_text("not an object")  # stray files are ignored
    source = ShapeNetSource(tmp_path)
    refs = source.objects()
    assert len(refs) == 6
    assert source.classes() == sorted(SYNSETS)
    assert {(r.class_name, r.object_id) for r in refs} == {(s, i) for s, objs in ids.items() for i in objs}
    assert all(source.split_of(r) is None for r in refs)
    assert source.synset_of(refs[0]) == refs[0].class_name


def test_shapenet_taxonomy_names_keep_the_sorted_synset_labels(tmp_path):
    _shapenet(tmp_path, taxonomy=True)
    source = ShapeNetSource(tmp_path)
    # labels = position of the synset in the sorted synsets (02691156 < 03001627 < 04379243), not of the name
    assert source.classes() == ["airplane", "chair", "table"]
    tables = [r for r in source.objects() if source.synset_of(r) == "04379243"]
    assert {r.class_name for r in tables} == {"table"}
    assert source.classes().index("table") == sorted(SYNSETS).index("04379243")


def test_shapenet_taxonomy_label_order_differs_from_name_order(tmp_path):
    for synset in ("01000000", "02000000"):
        _box(tmp_path / synset / "a1" / "models" / "model_normalized.obj")
    entries = [{"synsetId": "01000000", "name": "zebra"}, {"synsetId": "02000000", "name": "apple"}]
    (tmp_path / "taxonomy.json").write_text(json.dumps(entries))
    assert ShapeNetSource(tmp_path).classes() == ["zebra", "apple"]


def test_shapenet_split_files_select_objects_and_splits(tmp_path):
    ids = _shapenet(tmp_path, per_synset=3)
    train = [f"/{s}/{objs[0]}/" for s, objs in ids.items()] + [f"/02691156/{ids['02691156'][1]}/"]
    val = ["/03001627/" + ids["03001627"][2] + "/"]
    np.save(tmp_path / "train_images.npy", np.array(train))
    np.save(tmp_path / "val_images.npy", np.array(val))
    assert np.load(tmp_path / "train_images.npy", allow_pickle=False).dtype.kind == "U"
    source = ShapeNetSource(tmp_path)
    refs = source.objects()
    assert len(refs) == 5
    splits = {r.source_id: source.split_of(r) for r in refs}
    assert splits[f"03001627/{ids['03001627'][2]}"] == "val"
    assert sum(v == "train" for v in splits.values()) == 4
    # labels are over every synset of the tree, whatever the split selects
    assert source.classes() == sorted(SYNSETS)


def test_shapenet_refuses_pickled_split_files(tmp_path):
    _shapenet(tmp_path)
    np.save(tmp_path / "train_images.npy", np.array(["/02691156/x/"], dtype=object), allow_pickle=True)
    with pytest.raises(AssetError, match="unpickl"):
        ShapeNetSource(tmp_path)


def test_shapenet_split_entry_for_missing_object_fails_on_load_naming_the_file(tmp_path):
    _shapenet(tmp_path)
    np.save(tmp_path / "train_images.npy", np.array(["/02691156/doesnotexist/"]))
    source = ShapeNetSource(tmp_path)
    (ref,) = source.objects()
    with pytest.raises(AssetError, match="doesnotexist.*missing"):
        source.load(ref)


def test_shapenet_is_centred_but_not_rescaled(tmp_path):
    _shapenet(tmp_path, per_synset=1)
    source = ShapeNetSource(tmp_path)
    asset = source.load(source.objects()[0])
    assert asset.scale == 1.0 and asset.up_axis == "y"
    np.testing.assert_allclose(asset.mesh.bounds.sum(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(asset.mesh.extents, [0.2, 0.9, 0.5], atol=1e-9)  # Y-up file turned Z-up
    np.testing.assert_allclose(asset.file_to_canonical[:3, 3], [-3.0, 2.0, 1.0], atol=1e-9)


def test_modelnet_classes_and_splits_from_folders(tmp_path):
    for cls, split, name in [("airplane", "train", "airplane_0001"), ("airplane", "test", "airplane_0627"),
                             ("bathtub", "train", "bathtub_0001")]:
        _box(tmp_path / cls / split / f"{name}.off")
    _box(tmp_path / "bathtub" / "other" / "bathtub_0002.off")  # not a split folder: ignored
    source = ModelNetSource(tmp_path)
    refs = source.objects()
    assert [(r.class_name, r.object_id, source.split_of(r)) for r in refs] == [
        ("airplane", "airplane_0001", "train"), ("airplane", "airplane_0627", "val"), ("bathtub", "bathtub_0001", "train")
    ]
    assert source.classes() == ["airplane", "bathtub"]


def test_modelnet_header_defect_and_unit_diagonal(tmp_path):
    path = tmp_path / "chair" / "train" / "chair_0001.off"
    _box(path)
    lines = path.read_text().splitlines()
    path.write_text("OFF" + lines[1] + "\n" + "\n".join(lines[2:]) + "\n")  # ModelNet's 'OFF8 12 0' first line
    source = ModelNetSource(tmp_path)
    asset = source.load(source.objects()[0])
    assert np.linalg.norm(asset.mesh.extents) == pytest.approx(1.0)
    np.testing.assert_allclose(asset.mesh.bounds.sum(axis=0), 0.0, atol=1e-9)
    assert asset.scale == pytest.approx(1.0 / np.linalg.norm([1.0, 2.0, 4.0]))
    assert asset.up_axis == "z"


def test_objaverse_glb_scene_transforms_are_applied(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(extents=(1, 1, 1)), transform=trimesh.transformations.translation_matrix([4, 0, 0]))
    scene.add_geometry(trimesh.creation.box(extents=(1, 1, 1)))
    scene.export(tmp_path / "0a1b2c3d.glb")
    (tmp_path / "cars").mkdir()
    _box(tmp_path / "cars" / "F00d.glb")
    _box(tmp_path / "cars" / "ignored.obj")  # only glb/gltf in an objaverse folder
    source = ObjaverseSource(tmp_path)
    refs = source.objects()
    assert [(r.class_name, r.object_id) for r in refs] == [("objaverse", "0a1b2c3d"), ("objaverse", "f00d")]
    assert source.unsupported == ["cars/ignored.obj"]
    assert "one class" in source.warnings[0] and "--categories" in source.warnings[0]
    raw = source.load_raw(refs[0])
    assert len(raw.mesh.faces) == 24  # both boxes merged into one mesh
    np.testing.assert_allclose(raw.mesh.bounds, [[-0.5, -0.5, -0.5], [4.5, 0.5, 0.5]])
    assert np.linalg.norm(source.load(refs[0]).mesh.extents) == pytest.approx(1.0)


def test_folder_of_mixed_formats_classes_from_subfolders(tmp_path):
    root = tmp_path / "My Meshes"
    for rel in ["Mugs/Red Mug.obj", "mugs2/a.ply", "lamps/desk/b.stl", "lamps/c.glb", "loose.off"]:
        _box(root / rel)
    (root / "lamps" / "readme.txt").write_text("x")
    source = FolderSource(root)
    keys = [r.key for r in source.objects()]
    assert keys == ["lamps__c", "lamps__desk-b", "mugs__red-mug", "mugs2__a", "my-meshes__loose"]
    for ref in source.objects():
        assert np.linalg.norm(source.load(ref).mesh.extents) == pytest.approx(1.0)
        assert source.split_of(ref) is None


def test_folder_key_collision_is_a_clear_error(tmp_path):
    _box(tmp_path / "cups" / "a.obj")
    _box(tmp_path / "cups" / "A.ply")
    with pytest.raises(AssetError, match="same|both map"):
        FolderSource(tmp_path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "missing"),
        (b"\x00\x01\x02 definitely not a glb", "cannot read"),
        (b"", "cannot read|no triangles"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no triangles"),
        (b"v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 1\nf 1 2 3\nf 1 3 4\n", "NaN or infinite"),
    ],
    ids=["missing", "garbage", "zero-bytes", "no-faces", "nan"],
)
def test_broken_files_raise_asset_error_naming_the_file(tmp_path, content, reason):
    suffix = ".glb" if content and content.startswith(b"\x00") else ".obj"
    good = tmp_path / "things" / f"good{suffix}"
    bad = tmp_path / "things" / f"bad{suffix}"
    _box(good)
    bad.write_bytes(content if content is not None else b"v 0 0 0\n")
    source = FolderSource(tmp_path)
    refs = {r.object_id: r for r in source.objects()}
    if content is None:
        bad.unlink()  # listed, then deleted before loading
    with pytest.raises(AssetError, match=reason) as info:
        source.load(refs["bad"])
    assert str(info.value).startswith(f"things/bad{suffix}: ")  # named relative to the source root
    source.load(refs["good"])  # the rest of the collection still loads


def test_load_mesh_file_on_a_directory_is_an_asset_error(tmp_path):
    with pytest.raises(AssetError, match="missing"):
        load_mesh_file(tmp_path)


def test_open_source_specs(tmp_path):
    _box(tmp_path / "cls" / "train" / "x.off")
    assert isinstance(open_source(f"modelnet:{tmp_path}"), ModelNetSource)
    assert isinstance(open_source(f"folder:{tmp_path}"), FolderSource)
    with pytest.raises(AssetError, match="no objects"):
        open_source(f"objaverse:{tmp_path}")
    with pytest.raises(AssetError, match="shapenet:PATH"):
        open_source("nonsense:/x")
    with pytest.raises(AssetError, match="folder:PATH"):
        open_source("folder:")
    with pytest.raises(AssetError, match="positive integer"):
        open_source("procedural:zero")
    with pytest.raises(AssetError, match="not a directory"):
        open_source(f"folder:{tmp_path / 'nope'}")


def test_open_source_procedural():
    pytest.importorskip("orbitset.datasets.procedural")
    source = open_source("procedural:2")
    assert isinstance(source, AssetSource)
    per_class = {}
    for ref in source.objects():
        per_class[ref.class_name] = per_class.get(ref.class_name, 0) + 1
    assert set(per_class.values()) == {2}
    assert len(open_source("procedural").objects()) == 100 * len(per_class)
