"""Per-view factors: drawing them from a recipe and resolving them into a `ViewState`.

Randomness (DESIGN.md): view `v` of object `key` in a dataset of seed `s` draws its factors from
``np.random.default_rng([s, stable_hash(key), v])``, so a view's latents never depend on worker count, order,
executor or resumption. Draw order inside a view: the SO(3) quaternion first (4 normals) for ``rotation: so3``
recipes, then one uniform per factor in recipe order.

Resolution: rotation R from the Euler factors (``recipe.euler``) or the quaternion; translation t from
``trans_*``, applied in the object frame (world offset = R @ t, 3DIEBench-T) or the world frame; floor and spot
colours from their hues (saturation/value from the scene); spot position on its sphere at (spot_theta, spot_phi);
camera on its orbit from ``cam_*`` (elevation = pi/2 - polar angle) or the scene's camera.
"""

from __future__ import annotations

import math

import numpy as np

from orbitset import geometry
from orbitset.errors import RenderError
from orbitset.hashing import stable_hash
from orbitset.render.recipes import EULER_FACTORS, QUAT_FACTORS, TRANSLATION_FACTORS, DEFAULT_VALUES, Recipe
from orbitset.render.scene import SceneSpec, ViewState, hsv_to_rgb


def view_rng(seed: int, key: str, view: int) -> np.random.Generator:
    """The generator of view `view` of object `key` in a dataset of seed `seed`."""
    return np.random.default_rng([int(seed), stable_hash(key), int(view)])


def _uniform_union(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> float:
    """One draw, uniform on the union of the intervals (one rng.random() call)."""
    lengths = np.array([hi - lo for lo, hi in ranges])
    position = rng.random() * lengths.sum()
    for (lo, hi), length in zip(ranges, lengths):
        if position < length:
            return lo + position
        position -= length
    return ranges[-1][1]


def sample_view(recipe: Recipe, seed: int, key: str, view: int) -> np.ndarray:
    """(F,) float64 latents of one view, columns in `recipe.factor_names` order."""
    rng = view_rng(seed, key, view)
    values: list[float] = []
    if recipe.rotation == "so3":
        quat = rng.standard_normal(4)
        quat /= np.linalg.norm(quat)
        values.extend(quat * (1.0 if quat[3] >= 0 else -1.0))
    values.extend(_uniform_union(rng, spec.ranges) for spec in recipe.factors)
    return np.asarray(values, dtype=np.float64)


def sample_views(recipe: Recipe, seed: int, key: str, views: int | None = None) -> np.ndarray:
    """(V, F) latents of the first `views` (default: the recipe's) views of object `key`."""
    count = recipe.views if views is None else views
    return np.stack([sample_view(recipe, seed, key, v) for v in range(count)])


def _columns(recipe: Recipe, latents: np.ndarray) -> dict[str, np.ndarray]:
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] != len(recipe.factor_names):
        raise RenderError(
            f"recipe {recipe.name!r} has {len(recipe.factor_names)} factors {recipe.factor_names}, but the latents have "
            f"shape {latents.shape}; give (views, {len(recipe.factor_names)}) latents made with this recipe"
        )
    return {name: latents[:, i] for i, name in enumerate(recipe.factor_names)}


def _value(columns: dict[str, np.ndarray], fixed: dict[str, float], name: str, default: float, views: int) -> np.ndarray:
    if name in columns:
        return columns[name]
    return np.full(views, fixed.get(name, DEFAULT_VALUES.get(name, default)))


def rotations_of(recipe: Recipe, latents: np.ndarray) -> np.ndarray:
    """(V, 3, 3) object rotations of the latents (Euler in `recipe.euler`, or the so3 quaternion)."""
    columns = _columns(recipe, latents)
    views = len(latents)
    if recipe.rotation == "so3":
        return geometry.quat_to_matrix(np.stack([columns[n] for n in QUAT_FACTORS], axis=1))
    fixed = dict(recipe.fixed)
    angles = np.stack([_value(columns, fixed, n, 0.0, views) for n in EULER_FACTORS], axis=1)
    return geometry.euler_to_matrix(angles, recipe.euler)


def translations_of(recipe: Recipe, latents: np.ndarray, rotations: np.ndarray) -> np.ndarray | None:
    """(V, 3) world translations (R @ t for object-frame recipes), or None when the recipe never moves objects."""
    fixed = dict(recipe.fixed)
    if not any(n in recipe.factor_names or n in fixed for n in TRANSLATION_FACTORS):
        return None
    columns = _columns(recipe, latents)
    local = np.stack([_value(columns, fixed, n, 0.0, len(latents)) for n in TRANSLATION_FACTORS], axis=1)
    if recipe.translation_frame == "object":
        return np.einsum("vij,vj->vi", rotations, local)
    return local


def _aim(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera extrinsics looking from `eye` at `target`, +Z up (or +Y up when looking straight down)."""
    forward = np.asarray(target, dtype=np.float64) - eye
    up = (0.0, 0.0, 1.0) if np.linalg.norm(np.cross(forward, (0.0, 0.0, 1.0))) > 1e-9 * np.linalg.norm(forward) else (0.0, 1.0, 0.0)
    return geometry.look_at(eye, target, up)


def view_states(recipe: Recipe, latents: np.ndarray, scene: SceneSpec | None = None) -> list[ViewState]:
    """Resolve (V, F) latents into V ViewStates for `scene` (default: the recipe's scene)."""
    scene = recipe.scene_spec() if scene is None else scene
    columns = _columns(recipe, latents)
    fixed = dict(recipe.fixed)
    views = len(latents)
    rotations = rotations_of(recipe, latents)
    translations = translations_of(recipe, latents, rotations)
    value = lambda name, default=0.0: _value(columns, fixed, name, default, views)  # noqa: E731
    camera = scene.camera
    elevation = value("cam_elevation", math.pi / 2 - camera.theta)
    azimuth = value("cam_azimuth", camera.phi)
    distance = value("cam_distance", camera.distance)
    floor_hue, spot_hue, spot_theta, spot_phi, scale = (value(n) for n in ("floor_hue", "spot_hue", "spot_theta", "spot_phi", "scale"))
    target = np.asarray(camera.target, dtype=np.float64)
    states = []
    for v in range(views):
        eye = np.asarray(geometry.spherical_to_cartesian(distance[v], math.pi / 2 - elevation[v], azimuth[v])) + target
        states.append(
            ViewState(
                rotation=rotations[v],
                camera_extrinsics=_aim(eye, target),
                floor_rgb=hsv_to_rgb(float(floor_hue[v]), scene.floor.saturation, scene.floor.value),
                spot_rgb=hsv_to_rgb(float(spot_hue[v]), scene.spot.saturation, scene.spot.value),
                spot_position=np.asarray(geometry.spherical_to_cartesian(scene.spot.radius, spot_theta[v], spot_phi[v])),
                translation=np.zeros(3) if translations is None else translations[v],
                scale=float(scale[v]),
            )
        )
    return states
