"""Shared helpers of the render tests: read every sample of a dataset, check that point clouds project into a
backend's masks, a module-wide raster backend fixture, and a backend that hangs on one mesh."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from orbitset import geometry
from orbitset.datasets.sources import AssetSource
from orbitset.manifests.model import load_manifest
from orbitset.render import factors
from orbitset.render.backends.raster import RasterBackend
from orbitset.render.recipes import Recipe
from orbitset.render.scene import Backend
from orbitset.schema import decode
from orbitset.shards import ShardReader

#: A mesh with exactly this many vertices makes `HangingBackend` sleep far past any test timeout.
HANG_VERTICES = 4


def raster_backend_fixture(scene):
    """A module-scoped pytest fixture: one raster backend of `scene` for the module's tests, closed after them."""

    @pytest.fixture(scope="module")
    def backend():
        renderer = RasterBackend(scene)
        yield renderer
        renderer.close()

    return backend


def read_dataset(root: Path) -> dict:
    """key -> (shard name, decoded and validated ObjectSample) for every sample listed by the manifest."""
    manifest = load_manifest(root)
    out = {}
    for entry in manifest.shards:
        with ShardReader(root / entry.name) as reader:
            for fields in reader:
                out[fields["__key__"]] = (entry.name, decode(fields))
    return out


def check_points_project_inside_mask(backend: Backend, recipe: Recipe, source: AssetSource, seed: int = 0) -> int:
    """Render every view of every object of `source` with mask and depth; rotate the object's point cloud to each
    view's pose and project it with the view's camera; assert that >= 95% of the visible points (projected camera z
    within 1 cm + 1% of the rendered depth at their pixel) land in the mask. Returns the number of views checked."""
    from orbitset.render.job import points_rng
    from orbitset.render.points import surface_points

    scene = recipe.scene_spec()
    checked = 0
    for ref in source.objects():
        asset = source.load(ref)
        backend.set_asset(asset)
        points = surface_points(asset.mesh, 2048, points_rng(seed, ref.key))[:, :3].astype(np.float64)
        for state in factors.view_states(recipe, factors.sample_views(recipe, seed, ref.key), scene):
            view = backend.render(state, depth=True, mask=True)
            world = points @ (state.scale * state.rotation).T + state.translation
            pixels, depth = geometry.project(world, scene.intrinsics(), state.camera_extrinsics)
            cols, rows = np.round(pixels[:, 0]).astype(int), np.round(pixels[:, 1]).astype(int)
            inside = (cols >= 0) & (cols < scene.width) & (rows >= 0) & (rows < scene.height) & (depth > 0)
            rendered = view.depth[rows[inside], cols[inside]]
            visible = np.abs(rendered - depth[inside]) < 0.01 + 0.01 * depth[inside]
            hits = view.mask[rows[inside], cols[inside]][visible]
            assert visible.sum() > 50, f"{ref.key}: only {visible.sum()} visible points, too few to judge"
            assert hits.mean() >= 0.95, f"{ref.key}: only {hits.mean():.3f} of visible points land in the mask"
            checked += 1
    return checked


class HangingBackend(RasterBackend):
    """The raster backend, except that it hangs (as a stuck renderer would) on meshes of HANG_VERTICES vertices."""

    def set_asset(self, asset) -> None:
        if len(asset.mesh.vertices) == HANG_VERTICES:
            time.sleep(3600)
        super().set_asset(asset)


class NeverStartsBackend(RasterBackend):
    """A backend whose construction hangs, as a renderer stuck on a driver or a lock would."""

    def __init__(self, scene, preset: str = "fast"):
        time.sleep(3600)
