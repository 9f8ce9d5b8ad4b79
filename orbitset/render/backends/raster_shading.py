"""The raster backend's lighting, in NumPy: per-pixel light of 3DIEBench's scene as Cycles renders it, from the
rasterised passes (surface position, normal, albedo) and a depth map seen from the spot light.

Conventions: world frame Z-up, scene units; albedo and light are linear RGB; the result is display-encoded by
`filmic`, Blender's Filmic view transform (no look) as a per-channel curve. Light terms, each a linear radiance
(what Cycles' film records for a diffuse surface):

- spot: a sphere light of radius `soft_size` whose cone is Cycles' smoothstep from ``cos(spot_size / 2)`` over
  ``(1 - cos(spot_size / 2)) * blend``, seen from a surface point as a disk: the cone is averaged over the disk's
  directions (its edge softens over the disk's angular radius) and the shadow is the fraction of the disk that the
  object leaves visible (percentage-closer soft shadows on the light's depth map);
- sun: a distant light of angular diameter `angle` around straight down; a surface receives the mean of
  ``max(0, n . l)`` over the sun's disk of directions, so a floor facing it gets less than its strength;
- world: uniform light of the background colour from the sky half of each point's hemisphere;
- floor bounce: the floor's radiance below the object (its colour under the sun, the world and the spot's centre)
  reaching the object from the floor half of its hemisphere.

Each term carries a scale fitted against Blender (see `orbitset.render.backends.raster.LIGHT_SCALES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Blender's Filmic view transform (sRGB display, look None, exposure 0): display grey level (0-255) for scene-linear
#: values 0.18 * 2**stop, stop = -11, -10.5, ..., 7; measured by rendering a grey ramp through Blender 5.0's colour
#: management. Per channel it reproduces Filmic's output on random colours within 0.3 grey levels on average.
FILMIC_STOPS = np.arange(-11.0, 7.01, 0.5)
FILMIC_LEVELS = np.array([
    0.0, 0.0, 0.0, 0.45, 0.92, 2.02, 2.9, 4.17, 5.63, 7.74, 10.19, 13.32, 17.21, 22.0, 27.9, 35.09, 43.69, 53.86,
    65.71, 79.2, 94.18, 110.45, 127.52, 144.77, 161.78, 178.03, 193.02, 206.5, 218.16, 228.0, 236.01, 242.38, 247.27,
    250.82, 253.37, 255.0, 255.0,
])
_DISK_NODES = 8  # quadrature nodes over a light's disk (edge softness) and taps of the soft-shadow filter
SHADOW_TAPS = 16
SHADOW_BIAS = 0.02  # scene units: a surface does not shadow itself within this distance of the light's depth map


def filmic(linear: np.ndarray) -> np.ndarray:
    """Scene-linear values -> display grey levels (float, 0-255) through Blender's Filmic curve, per channel."""
    stops = np.log2(np.maximum(linear, 1e-12) / 0.18)
    return np.interp(stops, FILMIC_STOPS, FILMIC_LEVELS)


def _semicircle_quadrature(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [-1, 1] and weights (sum 1) for averaging over the projection of a uniform disk onto a diameter."""
    k = np.arange(1, count + 1)
    nodes = np.cos(k * np.pi / (count + 1))
    weights = np.sin(k * np.pi / (count + 1)) ** 2
    return nodes, weights / weights.sum()


def _sun_table(angle: float, samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(n_z grid, mean of max(0, n . l) over the sun's directions) for a sun of angular diameter `angle` around -Z,
    sampled as Cycles does: uniform on a disk of radius tan(angle / 2) in the plane tangent to the direction."""
    radius = math.tan(angle / 2)
    ring = np.sqrt((np.arange(samples) + 0.5) / samples)
    turn = np.arange(samples) * math.pi * (3 - math.sqrt(5))
    u, v = radius * ring * np.cos(turn), radius * ring * np.sin(turn)
    towards_sun = np.stack([u, v, np.ones_like(u)], axis=1)
    towards_sun /= np.linalg.norm(towards_sun, axis=1, keepdims=True)
    n_z = np.linspace(-1.0, 1.0, 129)
    normals = np.stack([np.sqrt(1 - n_z**2), np.zeros_like(n_z), n_z], axis=1)
    return n_z, np.maximum(normals @ towards_sun.T, 0.0).mean(axis=1)


@dataclass(frozen=True)
class SceneLights:
    """The scene's lights as the shader needs them (from a `SceneSpec`)."""

    spot_energy: float
    cos_half: float
    smooth: float  # (1 - cos_half) * blend: the smoothstep's width in cosine
    spot_radius: float
    sun_energy: float
    sun_n_z: np.ndarray
    sun_factor: np.ndarray
    world: np.ndarray

    @classmethod
    def of(cls, scene) -> "SceneLights":
        cos_half = math.cos(scene.spot.spot_size / 2)
        n_z, factor = _sun_table(scene.sun.angle)
        return cls(scene.spot.energy, cos_half, max((1 - cos_half) * scene.spot.blend, 1e-9), scene.spot.soft_size,
                   scene.sun.energy, n_z, factor, np.asarray(scene.background, dtype=np.float64))


def spot_cone(cos_angle: np.ndarray, disk_radius: np.ndarray, lights: SceneLights) -> np.ndarray:
    """Cycles' spot cone (smoothstep) averaged over a light disk of angular radius `disk_radius` (radians) around
    directions at `cos_angle` from the spot's axis."""
    nodes, weights = _semicircle_quadrature(_DISK_NODES)
    total = np.zeros(cos_angle.shape, dtype=np.float32)
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    inside = np.flatnonzero(angle - disk_radius < math.acos(lights.cos_half))
    angle, disk = angle[inside], disk_radius[inside]
    for node, weight in zip(nodes, weights):
        t = np.clip((np.cos(np.clip(angle + node * disk, 0.0, math.pi)) - lights.cos_half) / lights.smooth, 0.0, 1.0)
        total[inside] += weight * t * t * (3.0 - 2.0 * t)
    return total


def _vogel_disk(count: int) -> np.ndarray:
    """`count` points spread evenly over the unit disk, (count, 2)."""
    k = np.arange(count)
    ring = np.sqrt((k + 0.5) / count)
    turn = k * math.pi * (3 - math.sqrt(5))
    return np.stack([ring * np.cos(turn), ring * np.sin(turn)], axis=1)


def spot_visibility(points: np.ndarray, facing: np.ndarray, light_depth: np.ndarray, light_K: np.ndarray,
                    world_to_light: np.ndarray, light_radius: float) -> np.ndarray:
    """Fraction (0-1) of the spot's disk that each world point (N, 3) sees past the object, from `light_depth`: the
    object's planar depth seen from the light (OpenCV intrinsics `light_K`, extrinsics `world_to_light`; 0 where the
    light sees no object); `facing` is the cosine between each point's normal and the direction to the light, which
    widens the depth bias on surfaces the light grazes (one map texel spans more depth there). Percentage-closer soft
    shadows: the mean depth of the blockers near the point's projection
    sets the filter radius (the penumbra a disk of `light_radius` casts), then the fraction of filter taps that are
    not blockers is the visibility. Only points projecting near the object's silhouette are filtered."""
    visibility = np.ones(len(points), dtype=np.float32)
    occupied = light_depth > 0
    if not occupied.any() or len(points) == 0:
        return visibility
    nearest = float(light_depth[occupied].min())
    height, width = light_depth.shape
    rows_hit, cols_hit = np.nonzero(occupied)
    camera = points @ world_to_light[:3, :3].T.astype(np.float32) + world_to_light[:3, 3].astype(np.float32)
    z = camera[:, 2]
    focal = light_K[0, 0]
    u = focal * camera[:, 0] / np.maximum(z, 1e-6) + light_K[0, 2]
    v = light_K[1, 1] * camera[:, 1] / np.maximum(z, 1e-6) + light_K[1, 2]
    search = focal * light_radius * (z - nearest) / (nearest * np.maximum(z, 1e-6))
    near = ((z > nearest + SHADOW_BIAS) & (u + search >= cols_hit.min()) & (u - search <= cols_hit.max())
            & (v + search >= rows_hit.min()) & (v - search <= rows_hit.max()))
    index = np.flatnonzero(near)
    if len(index) == 0:
        return visibility
    z, u, v, search = z[index], u[index], v[index], search[index]
    cosine = np.clip(facing[index], 0.05, 1.0)
    bias = SHADOW_BIAS + np.minimum(z / focal * np.sqrt(1.0 - cosine**2) / cosine, 0.1)
    flat_depth = light_depth.astype(np.float32).ravel()
    taps = _vogel_disk(SHADOW_TAPS).astype(np.float32)

    def blockers(radius_px: np.ndarray) -> np.ndarray:
        """Depths at the taps (N, taps), 0 where the tap is not a blocker."""
        cols = np.clip(np.rint(u[:, None] + taps[None, :, 0] * radius_px[:, None]), 0, width - 1).astype(np.int64)
        rows = np.clip(np.rint(v[:, None] + taps[None, :, 1] * radius_px[:, None]), 0, height - 1).astype(np.int64)
        depth = flat_depth[rows * width + cols]
        return np.where((depth > 0) & (depth < (z - bias)[:, None]), depth, 0.0)

    found = blockers(np.maximum(search, 1.0))
    count = (found > 0).sum(axis=1)
    shaded = np.flatnonzero(count > 0)
    if len(shaded) == 0:
        return visibility
    blocker = found[shaded].sum(axis=1) / count[shaded]
    z, u, v, bias = z[shaded], u[shaded], v[shaded], bias[shaded]
    radius = focal * light_radius * (z - blocker) / (np.maximum(blocker, 1e-6) * z)
    visibility[index[shaded]] = 1.0 - (blockers(np.maximum(radius, 0.5)) > 0).mean(axis=1)
    return visibility


def sun_factor(n_z: np.ndarray, lights: SceneLights) -> np.ndarray:
    """Mean of max(0, n . l) over the sun's directions for normals with z component `n_z`."""
    return np.interp(n_z, lights.sun_n_z, lights.sun_factor)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """`image` (H, W, C) filtered by a gaussian of `sigma` pixels (5 taps per axis, edges repeated); as is for 0."""
    if sigma <= 0:
        return image
    offsets = np.arange(-2, 3)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).astype(image.dtype)
    for axis in (0, 1):
        padded = np.pad(image, [(2, 2) if a == axis else (0, 0) for a in range(image.ndim)], mode="edge")
        size = image.shape[axis]
        image = sum(w * np.take(padded, np.arange(k, k + size), axis=axis) for k, w in enumerate(weights))
    return image


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear values in [0, 1] -> sRGB-encoded (IEC 61966-2-1)."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


@dataclass
class Passes:
    """What the rasteriser drew for one view: per-pixel world position (H, W, 3), world normal (H, W, 3; zero where
    no object), linear albedo (H, W, 3), `hit` (something drawn), `on_object` (the object drawn), and the object's
    planar depth seen from the spot (`light_depth`, 0 where none) with that view's intrinsics and extrinsics."""

    position: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    hit: np.ndarray
    on_object: np.ndarray
    light_depth: np.ndarray
    light_K: np.ndarray
    world_to_light: np.ndarray


def light_terms(passes: Passes, spot_position: np.ndarray, spot_rgb: np.ndarray, floor_rgb: np.ndarray,
                floor_z: float, lights: SceneLights) -> dict[str, np.ndarray]:
    """The linear radiance (H, W, 3), float32, each light term (spot, sun, world, bounce) sends to the camera,
    unscaled; zero where nothing is hit."""
    shape = passes.position.shape
    hit = passes.hit.reshape(-1)
    on_object = passes.on_object.reshape(-1)
    points = passes.position.reshape(-1, 3).astype(np.float32)
    normals = passes.normal.reshape(-1, 3).astype(np.float32)
    normals[~on_object] = (0.0, 0.0, 1.0)
    albedo = np.where(hit[:, None], passes.albedo.reshape(-1, 3), 0.0).astype(np.float32)
    spot_position = spot_position.astype(np.float32)

    to_point = points - spot_position
    distance = np.sqrt((to_point * to_point).sum(axis=1))
    to_point /= distance[:, None]
    axis = -spot_position / np.linalg.norm(spot_position)
    disk = np.arcsin(np.minimum(lights.spot_radius / distance, 1.0))
    cone = spot_cone(to_point @ axis, disk, lights)
    facing = np.maximum(-(normals * to_point).sum(axis=1), 0.0)
    irradiance = (lights.spot_energy / (4 * math.pi)) * facing * cone / (distance * distance)
    lit = np.flatnonzero(hit & (irradiance > 0))
    if len(lit):
        irradiance[lit] *= spot_visibility(points[lit], facing[lit], passes.light_depth, passes.light_K, passes.world_to_light,
                                           lights.spot_radius)
    terms = {"spot": albedo * (irradiance / math.pi)[:, None] * spot_rgb.astype(np.float32)}
    terms["sun"] = albedo * (lights.sun_energy / math.pi * sun_factor(normals[:, 2], lights)).astype(np.float32)[:, None]
    terms["world"] = albedo * ((1.0 + normals[:, 2]) / 2)[:, None] * lights.world.astype(np.float32)

    # the floor below the object: lit by the sun, the world and the spot's pool centre (where its axis meets it)
    pool = 0.0
    if axis[2] < -1e-6:
        centre = spot_position + axis * (floor_z - spot_position[2]) / axis[2]
        pool = lights.spot_energy / (4 * math.pi * float(np.sum((centre - spot_position) ** 2))) * -axis[2]
    sun_on_floor = lights.sun_energy * float(sun_factor(np.ones(1), lights)[0])
    floor_radiance = floor_rgb * ((sun_on_floor + pool * spot_rgb) / math.pi + lights.world)
    ground = np.where(on_object, (1.0 - normals[:, 2]) / 2, 0.0)
    terms["bounce"] = albedo * ground[:, None] * floor_radiance.astype(np.float32)
    return {name: values.reshape(shape) for name, values in terms.items()}
