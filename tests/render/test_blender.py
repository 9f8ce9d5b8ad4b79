"""Blender backend: tiny renders (72x48, non-square to exercise the sensor fit) with the fast preset or Workbench."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from orbitset import geometry
from orbitset.errors import AssetError, RenderError
from orbitset.render.scene import CameraSpec, SceneSpec, ViewState, hsv_to_rgb

pytestmark = pytest.mark.blender

SPEC = SceneSpec(width=72, height=48)
_CACHE: dict[str, object] = {}


def _backend(preset: str = "fast"):
    """One backend per preset for the whole module (building a scene costs seconds)."""
    from orbitset.render.backends.blender import BlenderBackend

    if preset not in _CACHE:
        _CACHE[preset] = BlenderBackend(SPEC, preset=preset, threads=2)
    return _CACHE[preset]


def _object_asset():
    from orbitset.datasets.procedural import ProceduralSource

    source = ProceduralSource(instances_per_class=1)
    return source.load(source.objects()[0])


def _mesh_asset(mesh: trimesh.Trimesh, appearance: str = "uniform"):
    """A mesh already in its canonical frame, as a source without files would hand it over."""
    from orbitset.datasets.sources import LoadedAsset

    return LoadedAsset(mesh, None, np.eye(4), "z", appearance, {})


def _view(floor_hue=0.0, spot_hue=1 / 3, euler=(0.3, -0.4, 0.9), translation=(0.0, 0.0, 0.0), camera=SPEC.camera):
    return ViewState(
        rotation=geometry.euler_to_matrix(np.asarray(euler)),
        camera_extrinsics=camera.extrinsics(),
        floor_rgb=hsv_to_rgb(floor_hue, 0.6, 0.6),
        spot_rgb=hsv_to_rgb(spot_hue, 1.0, 0.8),
        spot_position=np.asarray(geometry.spherical_to_cartesian(4.0, 0.3, 1.2)),
        translation=np.asarray(translation, dtype=np.float64),
    )


def _camera_points(mesh, view):
    """Pixel coordinates and camera-z of the mesh vertices in `view`."""
    world = (view.object_to_world() @ np.c_[mesh.vertices, np.ones(len(mesh.vertices))].T).T[:, :3]
    return geometry.project(world, SPEC.intrinsics(), view.camera_extrinsics)


def test_renders_an_object_with_mask_and_depth():
    backend = _backend()
    backend.set_asset(_object_asset())
    out = backend.render(_view(), depth=True, mask=True)
    assert out.rgb.shape == (48, 72, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (48, 72) and out.depth.dtype == np.float32
    assert out.mask.shape == (48, 72) and out.mask.dtype == bool
    assert out.rgb.std() > 5  # an image, not a constant
    assert 30 < out.mask.sum() < 0.5 * out.mask.size  # the object covers part of the image, not the floor
    assert not out.mask[0].any() and not out.mask[-1].any()  # the image border is floor
    assert backend.version().startswith("blender ") and backend.version().endswith("cycles fast")
    assert list(backend._tmp.iterdir()) == []  # nothing left behind


def test_rgb_channel_order_follows_the_floor_hue():
    backend = _backend()
    backend.set_asset(_object_asset())
    red = backend.render(_view(floor_hue=0.0), mask=True)
    blue = backend.render(_view(floor_hue=2 / 3), mask=True)
    floor_red = red.rgb[~red.mask].astype(float).mean(axis=0)
    floor_blue = blue.rgb[~blue.mask].astype(float).mean(axis=0)
    assert floor_red[0] > floor_red[2] + 20, floor_red
    assert floor_blue[2] > floor_blue[0] + 20, floor_blue
    assert red.depth is None  # only what was asked for


def test_camera_convention_projected_vertices_match_the_mask():
    backend = _backend()
    asset = _object_asset()
    mesh = asset.mesh
    backend.set_asset(asset)
    camera = CameraSpec(distance=2.2, theta=1.0, phi=-0.7)  # another orbit position than the default
    for view in (_view(), _view(euler=(1.2, 0.1, -2.0), translation=(0.15, -0.1, 0.05), camera=camera)):
        out = backend.render(view, mask=True)
        uv, _ = _camera_points(mesh, view)
        rows, cols = np.nonzero(out.mask)
        # the silhouette's bounding box is the projected vertices' one (pixel centres at integers), within 1.5 px
        np.testing.assert_allclose([cols.min(), rows.min()], uv.min(axis=0), atol=1.5)
        np.testing.assert_allclose([cols.max(), rows.max()], uv.max(axis=0), atol=1.5)


def test_depth_is_planar_camera_z():
    backend = _backend()
    asset = _object_asset()
    mesh = asset.mesh
    backend.set_asset(asset)
    view = _view()
    out = backend.render(view, depth=True, mask=True)
    _, z = _camera_points(mesh, view)
    object_depth = out.depth[out.mask]
    assert object_depth.min() >= z.min() - 0.02 and object_depth.max() <= z.max() + 0.02
    # floor pixels: camera z of the ray's hit with the plane z = -1 (not the distance along the ray)
    extrinsics = view.camera_extrinsics
    rotation, centre = extrinsics[:3, :3], -extrinsics[:3, :3].T @ extrinsics[:3, 3]
    k_inverse = np.linalg.inv(SPEC.intrinsics())
    for row, col in [(0, 0), (0, 71), (47, 0), (47, 71)]:
        ray = rotation.T @ (k_inverse @ np.array([col, row, 1.0]))
        hit = centre + ray * (SPEC.floor.z - centre[2]) / ray[2]
        expected = (rotation @ (hit - centre))[2]
        assert out.depth[row, col] == pytest.approx(expected, rel=0.02)
        assert not math.isclose(expected, np.linalg.norm(hit - centre), rel_tol=0.02)  # radial would differ


def test_swapping_meshes_does_not_leak_datablocks():
    import bpy

    backend = _backend()
    backend.set_asset(_object_asset())  # coloured parts: a material of its own
    before = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images), len(bpy.data.objects))
    for size in (0.2, 0.4, 0.6, 0.8):
        backend.set_asset(_mesh_asset(trimesh.creation.icosphere(subdivisions=2, radius=size)))
        backend.render(_view(), depth=True, mask=True)
    backend.set_asset(_object_asset())
    after = (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images), len(bpy.data.objects))
    assert after == before


def test_bad_meshes_are_clear_orbitset_errors():
    backend = _backend()
    with pytest.raises(AssetError, match="empty"):
        backend.set_asset(_mesh_asset(trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), dtype=int))))
    nan_box = trimesh.creation.box()
    nan_box.vertices[0, 0] = np.nan
    with pytest.raises(AssetError, match="NaN"):
        backend.set_asset(_mesh_asset(nan_box))


def test_workbench_preview_beside_a_cycles_backend():
    cycles = _backend()
    cycles.set_asset(_object_asset())
    backend = _backend("workbench")
    with pytest.raises(RenderError, match="set_asset"):
        backend.render(_view())
    backend.set_asset(_object_asset())
    out = backend.render(_view(floor_hue=0.0))
    floor = out.rgb[[0, -1]].reshape(-1, 3).astype(float).mean(axis=0)
    assert floor[0] > floor[2] + 20, floor
    assert backend.version().endswith("workbench workbench")
    with pytest.raises(RenderError, match="RGB only"):
        backend.render(_view(), depth=True)
    assert cycles.render(_view(), mask=True).mask.any()  # both scenes live in one process


def test_close_removes_everything_the_backend_created():
    import bpy

    from orbitset.render.backends.blender import BlenderBackend

    collections = ("scenes", "objects", "meshes", "materials", "lights", "cameras", "worlds", "node_groups", "images")
    before = {name: len(getattr(bpy.data, name)) for name in collections}
    backend = BlenderBackend(SPEC, preset="workbench")
    backend.set_asset(_object_asset())
    backend.render(_view())
    tmp = backend._tmp
    backend.close()
    assert {name: len(getattr(bpy.data, name)) for name in collections} == before
    assert not tmp.exists()
    with pytest.raises(RenderError, match="closed"):
        backend.set_asset(_object_asset())
    with pytest.raises(RenderError, match="unknown Blender preset"):
        BlenderBackend(SPEC, preset="ultra")
