"""The raster backend's shortcuts keep their contracts: the mask taken from the normal pass is the object's
segmentation, and holding BLAS to one thread while rendering leaves the caller's thread settings as they were."""

from __future__ import annotations

from pathlib import Path

import shutil

import numpy as np
import threadpoolctl

from orbitset.datasets.mesh_sources import FolderSource
from orbitset.datasets.procedural import ProceduralSource
from orbitset.render import factors
from orbitset.render.recipes import get_recipe

from .helpers import raster_backend_fixture

ASSETS = Path(__file__).resolve().parents[1] / "data" / "assets"
RECIPE = get_recipe("3diebench").with_overrides(size=96)
SCENE = RECIPE.scene_spec()

backend = raster_backend_fixture(SCENE)


def _assets(tmp_path: Path):
    """Three procedural objects (grey) and pybullet's duck as OBJ+MTL with its texture and as glTF."""
    procedural = ProceduralSource(instances_per_class=1, classes=["chair", "mug", "airplane"])
    yield from (procedural.load(ref) for ref in procedural.objects())
    for folder, names in (("obj", ("duck.obj", "duck.mtl", "duckCM.png")), ("gltf", ("duck.glb",))):
        (tmp_path / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(ASSETS / name, tmp_path / folder / name)
    source = FolderSource(tmp_path)
    yield from (source.load(ref) for ref in source.objects())


def test_the_mask_is_the_segmentation_pass_of_the_object_with_the_floor_occluding(backend, monkeypatch, tmp_path):
    checked = 0
    for index, asset in enumerate(_assets(tmp_path)):
        backend.set_asset(asset)
        latents = factors.sample_views(RECIPE, seed=5, key=f"object-{index}")
        for view in factors.view_states(RECIPE, latents[:3], SCENE):
            mask = backend.render(view, mask=True).mask
            with monkeypatch.context() as patched:
                patched.setattr(backend, "_multisampled", True)  # the SEG pass that multisampling platforms take
                segmentation = backend.render(view, mask=True).mask
            assert segmentation.any() and not segmentation.all()
            np.testing.assert_array_equal(mask, segmentation)
            checked += 1
    assert checked >= 12


def test_rendering_leaves_the_callers_blas_threads_as_they_were(backend, tmp_path):
    before = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    asset = next(_assets(tmp_path))
    backend.set_asset(asset)
    view = factors.view_states(RECIPE, factors.sample_views(RECIPE, seed=1, key="object", views=1), SCENE)[0]
    backend.render(view, mask=True)
    backend.render_background(view)
    after = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    assert after == before
