"""Render backends and their registry; each imports its renderer (pyrender, bpy) only inside its own module.

`get_backend(name, scene, preset)` builds ``raster`` (pyrender, `orbitset.render.backends.raster`) or ``blender``
(bpy, `orbitset.render.backends.blender`). Any other backend can be named by its import path
``package.module:ClassName`` (a `Backend` subclass taking ``(scene, preset=...)``), so that it is found again in
worker processes and Ray tasks.
"""

from __future__ import annotations

import importlib

from orbitset.errors import RenderError
from orbitset.render.scene import Backend, SceneSpec

#: Built-in backends: name -> "module:Class".
BACKENDS = {
    "raster": "orbitset.render.backends.raster:RasterBackend",
    "blender": "orbitset.render.backends.blender:BlenderBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass `name` refers to (a built-in name or ``module:Class``)."""
    target = BACKENDS.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise RenderError(f"unknown render backend {name!r}; use one of {', '.join(BACKENDS)} or 'package.module:ClassName'")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise RenderError(f"render backend {name!r}: {target} is not a orbitset.render.scene.Backend subclass")
    return cls


def get_backend(name: str, scene: SceneSpec, preset: str = "fast") -> Backend:
    """Build backend `name` for `scene` with `preset` ("exact" or "fast"; each backend checks its own presets)."""
    return backend_class(name)(scene, preset=preset)
