"""Reading real third-party mesh files (tests/data/assets) with their appearance, up axis and honest failures."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from orbitset.datasets.mesh_files import load_mesh_file
from orbitset.datasets.mesh_sources import FolderSource, ModelNetSource, ObjaverseSource, open_source, read_categories
from orbitset.datasets.sources import Y_UP_TO_Z_UP
from orbitset.errors import AssetError

ASSETS = Path(__file__).resolve().parents[1] / "data" / "assets"


def _duck_tree(root: Path, texture_line: str) -> Path:
    """The duck in ShapeNet's layout (models/ + images/), its MTL pointing at the texture as `texture_line` says."""
    models, images = root / "models", root / "images"
    models.mkdir(parents=True)
    images.mkdir()
    shutil.copy(ASSETS / "duck.obj", models / "model_normalized.obj")
    shutil.copy(ASSETS / "duckCM.png", images / "duckCM.png")
    mtl = (ASSETS / "duck.mtl").read_text().replace("map_Ka duckCM.png\n", "").replace("map_Kd duckCM.png", texture_line)
    (models / "duck.mtl").write_text(mtl)
    return models / "model_normalized.obj"


def _duck_source(root: Path) -> tuple[FolderSource, object]:
    """A folder source holding the textured duck OBJ, and its ref."""
    (root / "ducks").mkdir(parents=True)
    for name in ("duck.obj", "duck.mtl", "duckCM.png"):
        shutil.copy(ASSETS / name, root / "ducks" / name)
    source = FolderSource(root)
    return source, source.objects()[0]


def test_textured_obj_keeps_its_texture_and_is_y_up():
    raw = load_mesh_file(ASSETS / "duck.obj")
    assert raw.up_axis == "y"
    assert raw.info["colour_source"] == "texture"
    assert raw.info["materials"] == ["blinn3"] and raw.info["textures"] == ["duckCM.png"]
    assert raw.info["textures_missing"] == [] and raw.info["files_missing"] == []
    assert raw.mesh.visual.material.image.size == (512, 512)
    assert raw.mesh.visual.uv.shape == (len(raw.mesh.vertices), 2)


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_texture_paths_relative_outside_the_folder_or_absolute_are_found(tmp_path, where):
    line = "map_Kd ../images/duckCM.png" if where == "relative" else f"map_Kd {tmp_path / 'duck' / 'images' / 'duckCM.png'}"
    raw = load_mesh_file(_duck_tree(tmp_path / "duck", line))
    assert raw.info["colour_source"] == "texture"
    assert raw.info["textures_missing"] == []


def test_missing_texture_falls_back_to_the_material_colour_and_is_recorded(tmp_path):
    raw = load_mesh_file(_duck_tree(tmp_path / "duck", "map_Kd ../images/gone.png"))
    assert raw.info["colour_source"] == "material"
    assert raw.info["textures_missing"] == ["../images/gone.png"]
    np.testing.assert_array_equal(raw.mesh.visual.material.diffuse[:3], [163, 163, 163])  # Kd 0.64


def test_missing_mtl_is_recorded_not_fatal(tmp_path):
    shutil.copy(ASSETS / "duck.obj", tmp_path / "duck.obj")
    raw = load_mesh_file(tmp_path / "duck.obj")
    assert raw.info["files_missing"] == ["duck.mtl"]
    assert len(raw.mesh.faces) == 4212


@pytest.mark.parametrize("name", ["prism_toy.obj", "tray.obj"])
def test_obj_naming_no_material_library_has_no_colours(name):
    """pybullet's prism and tray, their ``mtllib`` lines removed, have UVs: trimesh invents a dark grey material and
    a texture of it; Blender's importer gives them no material (Cycles' default grey), and so does the loader."""
    assert b"vt " in (ASSETS / name).read_bytes()
    asset = load_mesh_file(ASSETS / name)
    assert asset.mesh.visual.kind is None
    assert asset.info["colour_source"] == "none"
    assert asset.info["materials"] == [] and asset.info["embedded_textures"] == 0


def test_glb_with_embedded_texture():
    raw = load_mesh_file(ASSETS / "duck.glb")
    assert raw.up_axis == "y"
    assert raw.info["colour_source"] == "texture" and raw.info["embedded_textures"] == 1
    assert raw.mesh.visual.material.baseColorTexture.size == (512, 512)


def test_draco_glb_decodes_to_the_same_duck():
    plain, draco = load_mesh_file(ASSETS / "duck.glb"), load_mesh_file(ASSETS / "duck_draco.glb")
    assert len(draco.mesh.faces) == len(plain.mesh.faces)
    np.testing.assert_allclose(draco.mesh.bounds, plain.mesh.bounds, atol=2e-3 * np.ptp(plain.mesh.bounds))
    assert draco.info["colour_source"] == "texture"


def test_draco_glb_without_a_decoder_names_the_package(tmp_path, monkeypatch):
    (tmp_path / "ducks").mkdir()
    shutil.copy(ASSETS / "duck_draco.glb", tmp_path / "ducks" / "duck_draco.glb")
    source = FolderSource(tmp_path)
    monkeypatch.setitem(sys.modules, "DracoPy", None)  # as if DracoPy were not installed
    with pytest.raises(AssetError) as info:
        source.load(source.objects()[0])
    message = str(info.value)
    assert message.startswith("ducks/duck_draco.glb: ") and "Draco" in message and "pip install DracoPy" in message
    assert "degenerate" not in message


def test_ply_vertex_colours_and_z_up():
    raw = load_mesh_file(ASSETS / "duck_colours.ply")
    assert raw.up_axis == "z" and raw.info["colour_source"] == "vertex"
    duck = load_mesh_file(ASSETS / "duck.obj").mesh
    np.testing.assert_allclose(np.sort(raw.mesh.extents), np.sort(duck.extents), rtol=1e-5)
    np.testing.assert_allclose(raw.mesh.extents, np.abs(Y_UP_TO_Z_UP) @ duck.extents, rtol=1e-5)


def test_modelnet_off_with_the_glued_header(tmp_path):
    path = tmp_path / "duck" / "train" / "duck_0001.off"
    path.parent.mkdir(parents=True)
    shutil.copy(ASSETS / "duck_modelnet.off", path)
    assert path.read_text().startswith("OFF3514 3546 0\n")
    asset = ModelNetSource(tmp_path).load(ModelNetSource(tmp_path).objects()[0])
    assert len(asset.mesh.faces) == 3546 and asset.up_axis == "z"


def test_uniform_appearance_is_plain_geometry(tmp_path):
    source, ref = _duck_source(tmp_path)
    asset = source.load(ref, appearance="uniform")
    assert asset.appearance == "uniform" and asset.info == {}
    assert asset.mesh.visual.kind is None
    textured = source.load(ref)
    assert textured.mesh.visual.kind == "texture"
    np.testing.assert_allclose(asset.mesh.bounds, textured.mesh.bounds, atol=1e-9)


def test_up_axis_turns_y_up_files_as_blender_does_and_can_be_overridden(tmp_path):
    source, ref = _duck_source(tmp_path)
    raw = source.load_raw(ref).mesh
    turned, kept = source.load(ref), source.load(ref, up_axis="z")
    assert turned.up_axis == "y" and kept.up_axis == "z"
    # (x, y, z) -> (x, -z, y), then centring and scaling: check through file_to_canonical and the extents
    homogeneous = np.c_[raw.vertices, np.ones(len(raw.vertices))]
    np.testing.assert_allclose((homogeneous @ turned.file_to_canonical.T)[:, :3], turned.mesh.vertices, atol=1e-9)
    np.testing.assert_allclose(turned.mesh.extents[[0, 2, 1]], kept.mesh.extents, rtol=1e-9)
    np.testing.assert_allclose(turned.file_to_canonical[:3, :3] / turned.scale, Y_UP_TO_Z_UP, atol=1e-12)
    assert turned.to_json()["up_axis"] == "y" and turned.to_json()["textures"] == ["duckCM.png"]


def test_unsupported_files_are_listed(tmp_path):
    (tmp_path / "ducks").mkdir()
    shutil.copy(ASSETS / "duck.glb", tmp_path / "ducks" / "a.glb")
    for name in ("b.dae", "c.fbx"):
        (tmp_path / "ducks" / name).write_bytes(b"x")
    (tmp_path / "ducks" / "notes.txt").write_text("not a mesh")
    source = FolderSource(tmp_path)
    assert [r.key for r in source.objects()] == ["ducks__a"]
    assert source.unsupported == ["ducks/b.dae", "ducks/c.fbx"]


def _objaverse(root: Path) -> None:
    for folder, uid in [("000-000", "8f2a"), ("000-000", "91bc"), ("000-001", "a0c3")]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        trimesh.creation.box().export(root / folder / f"{uid}.glb")


@pytest.mark.parametrize("form", ["uid-to-category", "lvis", "csv"])
def test_objaverse_classes_from_a_categories_file_keyed_by_uid(tmp_path, form):
    _objaverse(tmp_path / "glbs")
    mapping = {"8f2a": "mug", "a0c3": "Chair"}
    if form == "csv":
        path = tmp_path / "categories.csv"
        path.write_text("uid,category\n" + "".join(f"{u},{c}\n" for u, c in mapping.items()))
    else:
        path = tmp_path / "categories.json"
        data = mapping if form == "uid-to-category" else {"mug": ["8f2a"], "Chair": ["a0c3"]}
        path.write_text(__import__("json").dumps(data))
    assert read_categories(path) == mapping
    source = open_source(f"objaverse:{tmp_path / 'glbs'}", categories=path)
    assert [r.key for r in source.objects()] == ["chair__a0c3", "mug__8f2a"]  # never the download's 000-00x folder
    assert "1 objects have no category" in source.warnings[0]


def test_objaverse_without_categories_is_one_class_with_a_warning(tmp_path):
    _objaverse(tmp_path)
    source = ObjaverseSource(tmp_path)
    assert {r.class_name for r in source.objects()} == {"objaverse"}
    assert [r.object_id for r in source.objects()] == ["8f2a", "91bc", "a0c3"]
    assert "--categories" in source.warnings[0]


def test_bad_categories_file_and_categories_for_another_source(tmp_path):
    _objaverse(tmp_path / "glbs")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(AssetError, match="uid -> category|uid: category"):
        open_source(f"objaverse:{tmp_path / 'glbs'}", categories=bad)
    with pytest.raises(AssetError, match="--categories is for objaverse"):
        open_source(f"folder:{tmp_path / 'glbs'}", categories=bad)
