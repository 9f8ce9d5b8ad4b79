"""The raster backend draws real assets as their files colour them, upright, and never drops open surfaces."""

from __future__ import annotations

import colorsys
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from orbitset.datasets.mesh_sources import FolderSource
from orbitset.datasets.procedural import ProceduralSource
from orbitset.datasets.sources import Y_UP_TO_Z_UP
from orbitset.render import factors
from orbitset.render.recipes import get_recipe
from orbitset.render.scene import ViewState

from .helpers import raster_backend_fixture

ASSETS = Path(__file__).resolve().parents[1] / "data" / "assets"
RECIPE = get_recipe("3diebench").with_overrides(size=128)
SCENE = RECIPE.scene_spec()


backend = raster_backend_fixture(SCENE)


def _view(rotation: np.ndarray = np.eye(3)) -> ViewState:
    """Grey floor, white spot above the camera side: colours come from the object only."""
    latents = np.zeros((1, len(RECIPE.factor_names)))
    state = factors.view_states(RECIPE, latents, SCENE)[0]
    return ViewState(rotation=rotation, camera_extrinsics=state.camera_extrinsics, floor_rgb=(0.5, 0.5, 0.5),
                     spot_rgb=(1.0, 1.0, 1.0), spot_position=state.spot_position)


def _hue_of_mean(rgb: np.ndarray) -> float:
    r, g, b = (np.asarray(rgb, dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255.0)
    return colorsys.rgb_to_hsv(r, g, b)[0]


def _hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 1.0 - abs(a - b))


def _folder(tmp_path: Path, names: tuple[str, ...]) -> FolderSource:
    (tmp_path / "things").mkdir()
    for name in names:
        shutil.copy(ASSETS / name, tmp_path / "things" / name)
    return FolderSource(tmp_path)


@pytest.mark.parametrize(
    "files",
    [("duck.obj", "duck.mtl", "duckCM.png"), ("duck.glb",), ("duck_draco.glb",), ("duck_colours.ply",)],
    ids=["obj-mtl", "glb", "draco-glb", "ply-vertex-colours"],
)
def test_the_sources_colour_appears(backend, tmp_path, files):
    source = _folder(tmp_path, files)
    asset = source.load(source.objects()[0])
    backend.set_asset(asset)
    view = backend.render(_view(), mask=True)
    assert view.mask.sum() > 200
    texture = np.asarray(Image.open(ASSETS / "duckCM.png").convert("RGB"))
    expected = _hue_of_mean(texture)
    assert _hue_distance(_hue_of_mean(view.rgb[view.mask]), expected) < 0.04
    backend.set_asset(source.load(source.objects()[0], appearance="uniform"))
    grey = backend.render(_view(), mask=True)
    r, g, b = grey.rgb[grey.mask].reshape(-1, 3).mean(axis=0) / 255.0
    assert colorsys.rgb_to_hsv(r, g, b)[1] < 0.1  # the uniform material adds no colour of its own


def test_procedural_objects_have_colours_per_part(backend):
    source = ProceduralSource(instances_per_class=1, classes=["chair"])
    ref = source.objects()[0]
    asset = source.load(ref)
    assert asset.info["colour_source"] == "face" and asset.info["parts"] >= 3
    assert 3 <= len(np.unique(asset.mesh.visual.face_colors, axis=0)) <= asset.info["parts"]
    again = source.load(ref)
    np.testing.assert_array_equal(again.mesh.visual.face_colors, asset.mesh.visual.face_colors)  # from the seed
    backend.set_asset(asset)
    view = backend.render(_view(), mask=True)
    pixels = view.rgb[view.mask].reshape(-1, 3)
    assert len({tuple(p // 32) for p in pixels}) >= 3  # several distinct colours on screen


@pytest.mark.parametrize("turn", [0.0, math.pi / 3, math.pi, 4 * math.pi / 3])
def test_an_open_sheet_is_never_blank(backend, tmp_path, turn):
    source = _folder(tmp_path, ("cloth_z_up.obj", "cloth_z_up.mtl", "cube.png"))
    asset = source.load(source.objects()[0])
    assert not asset.mesh.is_watertight
    normal = asset.mesh.face_normals[0]
    towards_camera = SCENE.camera.position() / np.linalg.norm(SCENE.camera.position())
    backend.set_asset(asset)
    checked = 0
    for axis in np.eye(3):  # turned about each axis: seen from the front and from the back
        rotation = trimesh.transformations.rotation_matrix(turn, axis)[:3, :3]
        if abs(np.dot(rotation @ normal, towards_camera)) < 0.3:
            continue  # seen (nearly) edge-on: legitimately thin
        view = backend.render(_view(rotation), mask=True)
        assert view.mask.sum() > 50, f"sheet vanished at {turn:.2f} rad about {axis}"
        assert view.rgb[view.mask].mean() > 20  # lit, not a black hole
        checked += 1
    assert checked >= 2


def _asymmetric_z_up() -> trimesh.Trimesh:
    """An L on a post, Z-up: a tall post, an arm along +X at the top, a foot along -Y at the bottom."""
    parts = [
        trimesh.creation.box(extents=(0.2, 0.2, 1.0)),
        trimesh.creation.box(extents=(0.6, 0.2, 0.2), transform=trimesh.transformations.translation_matrix((0.3, 0, 0.4))),
        trimesh.creation.box(extents=(0.2, 0.5, 0.2), transform=trimesh.transformations.translation_matrix((0, -0.25, -0.4))),
    ]
    return trimesh.util.concatenate(parts)


def test_rotation_zero_of_y_up_obj_and_glb_is_upright(backend, tmp_path):
    z_up = _asymmetric_z_up()
    y_up = z_up.copy()
    y_up.apply_transform(np.block([[Y_UP_TO_Z_UP.T, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    (tmp_path / "shapes").mkdir()
    z_up.export(tmp_path / "shapes" / "expected.ply")  # PLY: read Z-up, as written
    y_up.export(tmp_path / "shapes" / "as_obj.obj")
    y_up.export(tmp_path / "shapes" / "as_glb.glb")
    source = FolderSource(tmp_path)
    refs = {r.object_id: r for r in source.objects()}
    masks = {}
    for name in ("expected", "as_obj", "as_glb"):
        asset = source.load(refs[name])
        backend.set_asset(asset)
        masks[name] = backend.render(_view(), mask=True).mask
    backend.set_asset(source.load(refs["as_obj"], up_axis="z"))  # the raw Y-up frame: lying on its side
    masks["not_turned"] = backend.render(_view(), mask=True).mask

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert masks["expected"].sum() > 300
    assert iou(masks["as_obj"], masks["expected"]) > 0.98
    assert iou(masks["as_glb"], masks["expected"]) > 0.98
    assert iou(masks["not_turned"], masks["expected"]) < 0.8
    rows = np.nonzero(masks["expected"].any(axis=1))[0]
    cols = np.nonzero(masks["expected"].any(axis=0))[0]
    assert np.ptp(rows) > np.ptp(cols)  # upright: taller than wide on screen


def test_compiling_the_textured_pass_ahead_changes_no_pixel(monkeypatch):
    """The off-scene textured draw at construction only moves per-process work: the textured reference objects of
    benchmarks/fidelity.py (the panda's texture atlas is reduced, the duck's is not) and a procedural object render
    byte-identical images and masks with and without it, each after the other objects."""
    from orbitset.render.backends.raster import RasterBackend

    textured = FolderSource(Path(__file__).resolve().parents[2] / "benchmarks/data/3diebench-generator/textured/meshes")
    procedural = ProceduralSource(instances_per_class=1)
    assets = [textured.load(ref) for ref in textured.objects()] + [procedural.load(procedural.objects()[0])]
    assert [a.mesh.visual.kind for a in assets] == ["texture", "texture", "face"]
    views = factors.view_states(RECIPE, np.random.default_rng(0).uniform(size=(2, len(RECIPE.factor_names))), SCENE)

    def renders(backend) -> list:
        try:
            out = []
            for asset in assets:
                backend.set_asset(asset)
                out += [(v.rgb.tobytes(), v.mask.tobytes()) for v in (backend.render(s, mask=True) for s in views)]
            return out
        finally:
            backend.close()

    ahead = renders(RasterBackend(SCENE))
    monkeypatch.setattr(RasterBackend, "_compile_textured_pass", lambda self: None)
    assert renders(RasterBackend(SCENE)) == ahead


def test_mtllib_names_are_the_lines_the_obj_pattern_finds():
    """`mtllib_names` scans for ``mtllib`` instead of matching a pattern at every line: it must find exactly what
    ``(?m)^mtllib[ \\t]+(...)`` finds, on tricky lines and on the OBJ files shipped with trimesh and tests/data."""
    import re

    from orbitset.datasets.mesh_files import mtllib_names

    pattern = re.compile(rb"(?m)^mtllib[ \t]+([^\r\n]+)")
    cases = [b"mtllib a.mtl\nv 1 2 3\n", b"v 1\nmtllib  x y.mtl\r\nmtllib\tb.mtl", b"xmtllib a\n mtllib b\nmtllib\n",
             b"mtllib", b"mtllib \n", b"\rmtllib a\n", b"mtllibmtllib a\nmtllib mtllib z\n"]
    files = sorted(Path(trimesh.__file__).parent.rglob("*.obj")) + sorted(ASSETS.rglob("*.obj"))
    cases += [path.read_bytes() for path in files]
    assert sum(bool(pattern.findall(case)) for case in cases) >= 5
    for case in cases:
        assert mtllib_names(case) == pattern.findall(case), case[:60]
