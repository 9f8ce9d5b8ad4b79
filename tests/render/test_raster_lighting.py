"""The raster backend lights the scene as Cycles does where it shows: the spot's shadow falls on the floor, its
pool has a soft edge, and material features only Blender renders are recorded in meta.json and the manifest."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from orbitset.datasets.mesh_sources import FolderSource
from orbitset.render import factors
from orbitset.render.appearance import appearance_notes, diffuse_weight, material_features
from orbitset.render.backends import raster_shading
from orbitset.render.recipes import get_recipe
from orbitset.render.scene import ViewState

from .helpers import raster_backend_fixture, read_dataset

ASSETS = Path(__file__).resolve().parents[1] / "data" / "assets"
RECIPE = get_recipe("3diebench").with_overrides(size=96)
SCENE = RECIPE.scene_spec()


backend = raster_backend_fixture(SCENE)


def _duck(tmp_path: Path, mtl_extra: str = "") -> FolderSource:
    """pybullet's duck (OBJ+MTL+texture) in a folder source, its MTL extended by `mtl_extra` lines."""
    folder = tmp_path / "things"
    folder.mkdir(parents=True)
    for name in ("duck.obj", "duckCM.png"):
        shutil.copy(ASSETS / name, folder / name)
    (folder / "duck.mtl").write_text((ASSETS / "duck.mtl").read_text() + "\n" + mtl_extra)
    return FolderSource(tmp_path)


def _spot_above(translation=(0.0, 0.0, 0.0)) -> ViewState:
    """White spot straight above the origin, grey floor, the object at `translation`."""
    state = factors.view_states(RECIPE, np.zeros((1, len(RECIPE.factor_names))), SCENE)[0]
    return ViewState(rotation=np.eye(3), camera_extrinsics=state.camera_extrinsics, floor_rgb=(0.5, 0.5, 0.5),
                     spot_rgb=(1.0, 1.0, 1.0), spot_position=np.array([0.0, 0.0, SCENE.spot.radius]),
                     translation=np.asarray(translation, dtype=np.float64))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def test_the_object_shadows_the_floor_under_the_spot(backend, tmp_path):
    source = _duck(tmp_path)
    backend.set_asset(source.load(source.objects()[0]))
    view = _spot_above()
    lit = backend.render(view, mask=True)
    plate = backend.render_background(view)  # the object hidden from the camera, its shadow kept
    away = backend.render(_spot_above(translation=(0.0, 0.0, -1e3)))  # no object anywhere near: no shadow
    from scipy import ndimage

    floor = ~ndimage.binary_dilation(lit.mask, iterations=2)  # the blur standing in for Cycles' filter spreads edges
    darker = _luminance(away.rgb) - _luminance(lit.rgb) > 10
    assert (darker & floor).sum() > 100  # a shadow on the floor, outside the object
    np.testing.assert_array_equal(lit.rgb[floor], plate[floor])  # the plate keeps the very same shadow
    # the shadow lies below the object (the spot is straight above): under its projection on the floor
    rows, cols = np.nonzero(darker & floor)
    assert cols.mean() == pytest.approx(np.nonzero(lit.mask)[1].mean(), abs=SCENE.width / 8)


def test_the_pool_edge_is_soft_and_monotone():
    lights = raster_shading.SceneLights.of(SCENE)
    half = SCENE.spot.spot_size / 2
    angles = np.linspace(0.0, 2 * half, 400)
    disk = np.full_like(angles, math.asin(SCENE.spot.soft_size / 5.0))
    cone = raster_shading.spot_cone(np.cos(angles), disk, lights)
    assert np.all(np.diff(cone) <= 1e-7)  # never brightens outwards
    assert cone[0] == pytest.approx(1.0) and cone[-1] == 0.0
    hard = raster_shading.spot_cone(np.cos(angles), np.zeros_like(angles), lights)
    width = lambda profile: np.ptp(angles[(profile > 0.05) & (profile < 0.95)])  # noqa: E731
    assert width(cone) > 3 * width(hard)  # the light's disk softens Cycles' own narrow blend
    assert np.all(np.diff(hard) <= 1e-7) and hard[angles < half * 0.9].min() == pytest.approx(1.0)


def test_the_rendered_pool_darkens_monotonically_from_its_centre(backend, tmp_path):
    source = _duck(tmp_path)
    backend.set_asset(source.load(source.objects()[0]))
    image = _luminance(backend.render(_spot_above(translation=(0.0, 0.0, -1e3))).rgb)
    from orbitset import geometry

    centre, _ = geometry.project(np.array([[0.0, 0.0, SCENE.floor.z]]), SCENE.intrinsics(), SCENE.camera.extrinsics())
    col, row = np.rint(centre[0]).astype(int)
    profile = image[row, col:]  # outwards along the image row through the pool's centre
    assert profile[0] - profile[-1] > 20
    assert np.all(np.diff(profile) <= 1.0)  # monotone up to one grey level of rounding


def test_transmission_is_recorded_and_darkens_raster_as_blender_does(backend, tmp_path):
    clear = _duck(tmp_path / "clear")
    glass = _duck(tmp_path / "glass", "Tf 1.0 1.0 1.0\n")
    assert appearance_notes(clear.load(clear.objects()[0])) == []
    asset = glass.load(glass.objects()[0])
    notes = appearance_notes(asset)
    assert len(notes) == 1 and notes[0].startswith("transmission 1.0")
    assert diffuse_weight(material_features(asset)) == 0.0
    view = _spot_above()
    backend.set_asset(clear.load(clear.objects()[0]))
    bright = backend.render(view, mask=True)
    backend.set_asset(asset)
    dark = backend.render(view, mask=True)
    np.testing.assert_array_equal(dark.mask, bright.mask)  # masks do not depend on the material
    assert _luminance(dark.rgb[dark.mask]).mean() < 0.5 * _luminance(bright.rgb[bright.mask]).mean()


def test_pybullet_table_is_noted():
    pybullet_data = pytest.importorskip("pybullet_data")
    root = Path(pybullet_data.getDataPath()) / "table"
    source = FolderSource(root)
    ref = next(r for r in source.objects() if r.source_id == "table.obj")
    notes = appearance_notes(source.load(ref))
    assert any(n.startswith("transmission 1.0") for n in notes)


def test_notes_reach_meta_json_and_the_manifest(tmp_path):
    from orbitset.render.dataset import render_dataset

    source = _duck(tmp_path / "src", "Tf 1.0 1.0 1.0\nd 0.5\n")
    shutil.copy(ASSETS / "duck_colours.ply", tmp_path / "src" / "things" / "plain.ply")
    manifest = render_dataset("3diebench", FolderSource(tmp_path / "src"), tmp_path / "out", views=1, size=32, backend="raster",
                              layers=(), progress=False)
    samples = {key: sample for key, (_, sample) in read_dataset(tmp_path / "out").items()}
    noted = {key: sample.meta["appearance_notes"] for key, sample in samples.items()}
    assert [n.split(" ")[0] for n in noted["things__duck"]] == ["transmission", "alpha"]
    assert noted["things__plain"] == []
    assert manifest.extra["appearance_notes"] == {"objects": 1, "features": {"alpha": 1, "transmission": 1}}
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["extra"]["appearance_notes"]["objects"] == 1
