"""Blender backend on real asset files: Blender's importers, orientation at rotation 0, colours from the source.

Assets are written here with trimesh and Blender's glTF exporter (Draco), or shipped with the fidelity benchmark
(the pybullet duck, OBJ + MTL + PNG texture). Renders are 64 px with the fast preset and a white spot light, so
that the object's colours are its own.
"""

from __future__ import annotations

import colorsys
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from orbitset import geometry
from orbitset.datasets.mesh_sources import FolderSource, ShapeNetSource
from orbitset.render.scene import SceneSpec, ViewState

pytestmark = pytest.mark.blender

SPEC = SceneSpec(width=64, height=64)
DUCK = Path(__file__).resolve().parents[2] / "benchmarks/data/3diebench-generator/textured/meshes/03797390/pyb_duck"
_CACHE: dict[str, object] = {}


def _backend():
    from orbitset.render.backends.blender import BlenderBackend

    if "fast" not in _CACHE:
        _CACHE["fast"] = BlenderBackend(SPEC, preset="fast", threads=2)
    return _CACHE["fast"]


def _view(rotation=np.eye(3)) -> ViewState:
    return ViewState(
        rotation=np.asarray(rotation, dtype=np.float64),
        camera_extrinsics=SPEC.camera.extrinsics(),
        floor_rgb=(0.3, 0.3, 0.3),
        spot_rgb=(0.8, 0.8, 0.8),
        spot_position=np.asarray(geometry.spherical_to_cartesian(4.0, 0.2, 1.0)),
    )


def _flag_parts() -> list[trimesh.Trimesh]:
    """An asymmetric 'flag', upright in Z-up coordinates: a pole along +Z with a panel at its top towards +X."""
    pole = trimesh.creation.box(extents=(0.2, 0.2, 1.2))
    panel = trimesh.creation.box(extents=(0.5, 0.1, 0.35))
    panel.apply_translation((0.35, 0.0, 0.425))
    return [pole, panel]


def _z_up_to_y_up(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The same shape written Y-up, as ShapeNet and glTF store it: (x, y, z) -> (x, z, -y)."""
    out = mesh.copy()
    out.vertices = np.c_[mesh.vertices[:, 0], mesh.vertices[:, 2], -mesh.vertices[:, 1]]
    return out


def _expected_mask(parts: list[trimesh.Trimesh], unit_diagonal: bool = False) -> np.ndarray:
    """Silhouette of Z-up `parts` (centred on their bounding box, scaled to a unit diagonal if asked) at rotation 0:
    pixel centres inside a projected triangle."""
    merged = trimesh.util.concatenate(parts)
    centre = merged.bounds.mean(axis=0)
    scale = 1.0 / np.linalg.norm(np.ptp(merged.bounds, axis=0)) if unit_diagonal else 1.0
    pixels, _ = geometry.project(scale * (merged.vertices - centre), SPEC.intrinsics(), SPEC.camera.extrinsics())
    rows, cols = np.mgrid[0 : SPEC.height, 0 : SPEC.width]
    mask = np.zeros((SPEC.height, SPEC.width), dtype=bool)
    for a, b, c in pixels[merged.faces]:
        sides = [(q[0] - p[0]) * (rows - p[1]) - (q[1] - p[1]) * (cols - p[0]) for p, q in ((a, b), (b, c), (c, a))]
        mask |= np.all([side >= 0 for side in sides], axis=0) | np.all([side <= 0 for side in sides], axis=0)
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _hue(rgb: np.ndarray) -> float:
    """Hue of the mean colour of (N, 3) pixels in [0, 255]."""
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255.0))[0]


def _hue_distance(a: float, b: float) -> float:
    return min(abs(a - b) % 1.0, 1.0 - abs(a - b) % 1.0)


def _render(asset, view=None):
    backend = _backend()
    backend.set_asset(asset)
    return backend, backend.render(view or _view(), mask=True)


def _only(source):
    (ref,) = source.objects()
    return source.load(ref)


def _duck(appearance: str = "source"):
    source = ShapeNetSource(DUCK.parents[1])
    (ref,) = [ref for ref in source.objects() if ref.source_id.endswith("/pyb_duck")]
    return source.load(ref, appearance=appearance)


def _texture_image(rgb) -> Image.Image:
    """A 16x16 texture of colour `rgb` (uint8) with a darker checker, so that it is an image, not a flat colour."""
    pixels = np.empty((16, 16, 3), dtype=np.uint8)
    pixels[:] = rgb
    pixels[::2, ::2] = (np.asarray(rgb) * 0.7).astype(np.uint8)
    return Image.fromarray(pixels)


def _textured_box(rgb) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.5, 0.4, 0.3))
    box.unmerge_vertices()  # one UV per corner of each face
    uv = np.tile([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]], (len(box.faces), 1))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=_texture_image(rgb))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return box


def test_y_up_obj_and_glb_are_upright_at_rotation_zero(tmp_path):
    parts = _flag_parts()
    y_up = _z_up_to_y_up(trimesh.util.concatenate(parts))
    model = tmp_path / "shapenet" / "02691156" / "flag" / "models"
    model.mkdir(parents=True)
    y_up.export(model / "model_normalized.obj")
    (tmp_path / "glb").mkdir()
    y_up.export(tmp_path / "glb" / "flag.glb")
    # ShapeNet keeps its scale; other folders are scaled to a unit diagonal
    for source, importer, unit in ((ShapeNetSource(tmp_path / "shapenet"), "blender-obj", False),
                                   (FolderSource(tmp_path / "glb"), "blender-gltf", True)):
        expected = _expected_mask(parts, unit)
        in_file_frame = _expected_mask([_z_up_to_y_up(p) for p in parts], unit)  # the pose without the up-axis change
        assert _iou(expected, in_file_frame) < 0.6  # the check below tells the two poses apart
        backend, out = _render(_only(source))
        assert backend.last_import["importer"] == importer and "import_note" not in backend.last_import
        assert _iou(out.mask, expected) > 0.9, (importer, _iou(out.mask, expected))


def test_textured_obj_with_mtl_shows_its_texture():
    texture = np.asarray(Image.open(DUCK / "images" / "duckCM.png").convert("RGB"))
    backend, out = _render(_duck())
    assert backend.last_import == {"importer": "blender-obj", "textures_missing": []}
    assert out.mask.sum() > 200
    assert _hue_distance(_hue(out.rgb[out.mask]), _hue(texture)) < 0.04
    assert colorsys.rgb_to_hsv(*(out.rgb[out.mask].mean(axis=0) / 255))[1] > 0.4  # coloured, not grey


def test_missing_texture_falls_back_to_the_material_colour(tmp_path):
    folder = tmp_path / "objs"
    folder.mkdir()
    shutil.copy(DUCK / "models" / "model_normalized.obj", folder / "duck.obj")
    text = (folder / "duck.obj").read_text().replace("mtllib model_normalized.mtl", "mtllib duck.mtl")
    (folder / "duck.obj").write_text(text)
    (folder / "duck.mtl").write_text("newmtl blinn3\nKd 0.1 0.2 0.8\nmap_Kd ../images/gone.png\n")
    backend, out = _render(_only(FolderSource(folder)))
    assert [Path(p).name for p in backend.last_import["textures_missing"]] == ["gone.png"]
    assert _hue_distance(_hue(out.rgb[out.mask]), colorsys.rgb_to_hsv(0.1, 0.2, 0.8)[0]) < 0.05  # blue, not magenta


def test_glb_with_embedded_texture_and_draco_glb(tmp_path):
    import bpy

    folder = tmp_path / "glbs"
    folder.mkdir()
    box = _textured_box((40, 200, 60))
    box.export(folder / "plain.glb")
    # the same object compressed with Draco by Blender's own exporter
    bpy.ops.import_scene.gltf(filepath=str(folder / "plain.glb"))
    imported = list(bpy.context.selected_objects)
    bpy.ops.export_scene.gltf(filepath=str(tmp_path / "draco.glb"), export_format="GLB", use_selection=True,
                              use_active_scene=True, export_draco_mesh_compression_enable=True)
    bpy.data.batch_remove(imported)
    assert b"KHR_draco_mesh_compression" in (tmp_path / "draco.glb").read_bytes()[:4000]
    (folder / "draco").mkdir()
    shutil.move(tmp_path / "draco.glb", folder / "draco" / "draco.glb")
    source = FolderSource(folder)
    green = colorsys.rgb_to_hsv(40, 200, 60)[0]
    for ref in source.objects():
        backend, out = _render(source.load(ref))
        assert backend.last_import["importer"] == "blender-gltf", (ref, backend.last_import)
        assert out.mask.sum() > 200, ref
        assert _hue_distance(_hue(out.rgb[out.mask]), green) < 0.05, ref


def test_ply_vertex_colours_and_trimesh_visuals(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    sphere.visual.vertex_colors = np.tile([200, 120, 20, 255], (len(sphere.vertices), 1))  # orange
    sphere.export(tmp_path / "ball.ply")
    backend, out = _render(_only(FolderSource(tmp_path)))
    orange = colorsys.rgb_to_hsv(200, 120, 20)[0]
    assert backend.last_import["importer"] == "blender-ply"
    assert _hue_distance(_hue(out.rgb[out.mask]), orange) < 0.04
    # the same colours reaching Blender as trimesh visuals (objects without a file Blender imports)
    from orbitset.datasets.sources import LoadedAsset

    for mesh in (sphere, _textured_box((200, 120, 20))):
        backend, out = _render(LoadedAsset(mesh, None, np.eye(4), "z", "source", {}))
        assert backend.last_import["importer"] == "trimesh"
        assert _hue_distance(_hue(out.rgb[out.mask]), orange) < 0.04


def test_uniform_appearance_is_grey_and_a_wrong_frame_falls_back_to_the_mesh(tmp_path):
    backend, out = _render(_duck("uniform"))
    assert backend.last_import == {"importer": "trimesh"}
    assert colorsys.rgb_to_hsv(*(out.rgb[out.mask].mean(axis=0) / 255))[1] < 0.1  # grey under a white spot
    import dataclasses

    asset = _duck()
    skewed = dataclasses.replace(asset, file_to_canonical=asset.file_to_canonical @ np.diag([2.0, 2.0, 2.0, 1.0]))
    backend, out = _render(skewed)
    assert backend.last_import["importer"] == "trimesh" and "bounds" in backend.last_import["import_note"]
    assert out.mask.sum() > 200


def test_swapping_imported_assets_does_not_leak_datablocks(tmp_path):
    import bpy

    sphere = trimesh.creation.icosphere(subdivisions=1, radius=0.3)
    sphere.visual.vertex_colors = np.tile([20, 120, 200, 255], (len(sphere.vertices), 1))
    sphere.export(tmp_path / "ball.ply")
    _textured_box((200, 40, 40)).export(tmp_path / "box.glb")
    assets = [_duck()] + [FolderSource(tmp_path).load(r) for r in FolderSource(tmp_path).objects()]
    backend = _backend()
    backend.set_asset(assets[0])
    names = ("meshes", "materials", "images", "objects", "node_groups", "collections")
    before = {name: len(getattr(bpy.data, name)) for name in names}
    for asset in assets[1:] + assets[:1]:
        backend.set_asset(asset)
        assert backend.render(_view(), mask=True).mask.any()
    assert {name: len(getattr(bpy.data, name)) for name in names} == before


def test_procedural_parts_keep_their_colours():
    from orbitset.datasets.procedural import ProceduralSource

    source = ProceduralSource(instances_per_class=1)
    asset = source.load(source.objects()[0])
    assert asset.mesh.visual.kind == "face"
    backend, out = _render(asset)
    assert backend.last_import == {"importer": "trimesh", "colours": "face"}
    pixels = out.rgb[out.mask].astype(np.float64) / 255.0
    saturation = (pixels.max(axis=1) - pixels.min(axis=1)) / np.maximum(pixels.max(axis=1), 1e-6)
    assert np.median(saturation) > 0.2  # coloured parts, not the uniform grey
    hues = {round(colorsys.rgb_to_hsv(*p)[0], 1) for p in pixels[saturation > 0.2]}
    assert len(hues) >= 2  # several parts, several colours
