"""The raster backend keeps a fixed set of compiled shader programs however many objects and views it renders, so a
long render job's memory stays flat."""

from __future__ import annotations

import numpy as np
import trimesh

from orbitset.datasets.sources import LoadedAsset
from orbitset.render.backends.raster import RasterBackend
from orbitset.render.scene import CameraSpec, SceneSpec, ViewState


def test_shader_programs_are_compiled_once_not_per_render():
    backend = RasterBackend(SceneSpec(width=32, height=32))
    view = ViewState(rotation=np.eye(3), camera_extrinsics=CameraSpec().extrinsics(), floor_rgb=(0.5, 0.2, 0.2),
                     spot_rgb=(0.2, 0.3, 0.8), spot_position=np.array([0.0, 0.0, 4.0]))
    programs = backend._renderer._renderer._program_cache._program_cache
    counts = []
    try:
        for size in (0.3, 0.5, 0.7):
            box = trimesh.creation.box(extents=(size, 0.4, 0.2))
            backend.set_asset(LoadedAsset(box, None, np.eye(4), "z", "uniform", {}))
            for _ in range(3):
                backend.render(view, mask=True)
                counts.append(len(programs))
    finally:
        backend.close()
    assert counts[0] > 0
    assert counts == [counts[0]] * len(counts), f"programs compiled per render: {counts}"
