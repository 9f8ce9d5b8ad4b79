"""Point clouds: area weighting, determinism, FPS order; and that they project into the raster backend's masks."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from orbitset.datasets.procedural import ProceduralSource
from orbitset.render.points import farthest_point_order, surface_points
from orbitset.render.recipes import get_recipe

from .helpers import check_points_project_inside_mask


def test_points_are_on_the_surface_with_unit_normals_and_deterministic():
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    a = surface_points(mesh, 2048, np.random.default_rng(5))
    assert a.shape == (2048, 6) and a.dtype == np.float32
    assert np.array_equal(a, surface_points(mesh, 2048, np.random.default_rng(5)))
    assert not np.array_equal(a, surface_points(mesh, 2048, np.random.default_rng(6)))
    assert np.allclose(np.linalg.norm(a[:, 3:], axis=1), 1, atol=1e-5)
    on_face = np.isclose(np.abs(a[:, :3]), [1.0, 0.5, 0.25], atol=1e-5).any(axis=1)
    assert on_face.all()


def test_points_are_area_weighted():
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    points = surface_points(mesh, 6000, np.random.default_rng(0))
    top = np.isclose(points[:, 2], 0.25, atol=1e-5).mean()  # the +z face: area 2 of a total 7
    assert top == pytest.approx(2 / 7, abs=0.025)  # 4 sigma


def test_first_points_are_farthest_point_subsets():
    xyz = np.random.default_rng(1).normal(size=(300, 3))
    ordered = xyz[farthest_point_order(xyz)]
    for k in range(1, 300):  # point k is the one farthest from the first k (brute force)
        distance = np.linalg.norm(ordered[k:, None] - ordered[None, :k], axis=2).min(axis=1)
        assert distance[0] == pytest.approx(distance.max())
    assert sorted(farthest_point_order(xyz)) == list(range(300))


def test_points_project_inside_the_raster_mask():
    """Rotate the cloud to each view's pose, project with the stored camera; >= 95% of visible points hit the mask."""
    from orbitset.render.backends import get_backend

    recipe = get_recipe("3diebench-t").with_overrides(size=96, views=6)
    backend = get_backend("raster", recipe.scene_spec())
    try:
        checked = check_points_project_inside_mask(backend, recipe, ProceduralSource(instances_per_class=1, classes=["chair", "mug", "airplane"]))
    finally:
        backend.close()
    assert checked == 18
