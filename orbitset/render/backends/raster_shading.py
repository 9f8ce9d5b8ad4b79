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

import functools
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


_DISK_QUADRATURE = _semicircle_quadrature(_DISK_NODES)


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
    directions at `cos_angle` from the spot's axis; float32. Only directions whose disk reaches the blend are
    integrated: the rest are 1 (fully inside) or 0 (fully outside)."""
    nodes, weights = _DISK_QUADRATURE
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    outer, inner = math.acos(lights.cos_half), math.acos(min(lights.cos_half + lights.smooth, 1.0))
    total = (angle + disk_radius <= inner).astype(np.float32)
    ring = np.flatnonzero((angle - disk_radius < outer) & (angle + disk_radius > inner))
    angle, disk = angle[ring], disk_radius[ring]
    partial = np.zeros(len(ring), dtype=np.float32)
    for node, weight in zip(nodes, weights):
        t = np.clip((np.cos(np.clip(angle + node * disk, 0.0, math.pi)) - lights.cos_half) / lights.smooth, 0.0, 1.0)
        partial += weight * t * t * (3.0 - 2.0 * t)
    total[ring] = partial
    return total


def _vogel_disk(count: int) -> np.ndarray:
    """`count` points spread evenly over the unit disk, (count, 2)."""
    k = np.arange(count)
    ring = np.sqrt((k + 0.5) / count)
    turn = k * math.pi * (3 - math.sqrt(5))
    return np.stack([ring * np.cos(turn), ring * np.sin(turn)], axis=1)


_SHADOW_TAPS = _vogel_disk(SHADOW_TAPS).astype(np.float32)


def spot_visibility(points: np.ndarray, facing: np.ndarray, light_depth: np.ndarray, light_K: np.ndarray,
                    world_to_light: np.ndarray, light_radius: float) -> np.ndarray:
    """Fraction (0-1) of the spot's disk that each world point (3, N) sees past the object, from `light_depth`: the
    object's planar depth seen from the light (OpenCV intrinsics `light_K`, extrinsics `world_to_light`; 0 where the
    light sees no object); `facing` is the cosine between each point's normal and the direction to the light, which
    widens the depth bias on surfaces the light grazes (one map texel spans more depth there). Percentage-closer soft
    shadows: the mean depth of the blockers near the point's projection
    sets the filter radius (the penumbra a disk of `light_radius` casts), then the fraction of filter taps that are
    not blockers is the visibility. Only points projecting near the object's silhouette are filtered."""
    count = points.shape[1]
    visibility = np.ones(count, dtype=np.float32)
    occupied = light_depth > 0
    if not occupied.any() or count == 0:
        return visibility
    nearest = float(light_depth[occupied].min())
    height, width = light_depth.shape
    rows_hit, cols_hit = np.nonzero(occupied.any(axis=1))[0], np.nonzero(occupied.any(axis=0))[0]
    camera = world_to_light[:3, :3].astype(np.float32) @ points + world_to_light[:3, 3:].astype(np.float32)
    z = np.maximum(camera[2], 1e-6)
    focal, cx, fy, cy = (float(light_K[0, 0]), float(light_K[0, 2]), float(light_K[1, 1]), float(light_K[1, 2]))
    u = focal * camera[0] / z + cx
    v = fy * camera[1] / z + cy
    search = (focal * light_radius / nearest) * (z - nearest) / z
    near = ((camera[2] > nearest + SHADOW_BIAS) & (u + search >= cols_hit[0]) & (u - search <= cols_hit[-1])
            & (v + search >= rows_hit[0]) & (v - search <= rows_hit[-1]))
    index = np.flatnonzero(near)
    if len(index) == 0:
        return visibility
    z, u, v, search = z[index], u[index], v[index], search[index]
    cosine = np.clip(facing[index], 0.05, 1.0)
    # a map texel closer to the light than `limit` blocks the point
    limit = z - (SHADOW_BIAS + np.minimum(z / focal * np.sqrt(1.0 - cosine**2) / cosine, 0.1))
    flat_depth = light_depth.astype(np.float32, copy=False).ravel()

    def blockers(u: np.ndarray, v: np.ndarray, limit: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
        """Depths at the taps (N, taps) of disks of `radius_px` around (u, v), 0 where the tap is not a blocker."""
        cols = np.multiply(_SHADOW_TAPS[:, 0], radius_px[:, None])
        cols += u[:, None]
        np.clip(cols, 0, width - 1, out=cols)
        rows = np.multiply(_SHADOW_TAPS[:, 1], radius_px[:, None])
        rows += v[:, None]
        np.clip(rows, 0, height - 1, out=rows)
        pixel = np.rint(rows, out=rows).astype(np.int32)
        pixel *= width
        pixel += np.rint(cols, out=cols).astype(np.int32)
        depth = flat_depth[pixel]
        depth *= depth < limit[:, None]  # no object there (depth 0) stays 0
        return depth

    found = blockers(u, v, limit, np.maximum(search, 1.0))
    count = np.count_nonzero(found, axis=1)
    shaded = np.flatnonzero(count)
    if len(shaded) == 0:
        return visibility
    blocker = found[shaded].sum(axis=1) / count[shaded]
    z, u, v, limit = z[shaded], u[shaded], v[shaded], limit[shaded]
    radius = focal * light_radius * (z - blocker) / (np.maximum(blocker, 1e-6) * z)
    unblocked = 1.0 - np.count_nonzero(blockers(u, v, limit, np.maximum(radius, 0.5)), axis=1) / np.float32(SHADOW_TAPS)
    visibility[index[shaded]] = unblocked
    return visibility


def sun_factor(n_z: np.ndarray, lights: SceneLights) -> np.ndarray:
    """Mean of max(0, n . l) over the sun's directions for normals with z component `n_z`."""
    return np.interp(n_z, lights.sun_n_z, lights.sun_factor)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Planar `image` (C, H, W) filtered by a gaussian of `sigma` pixels (5 taps per axis, edges repeated); as is
    for 0."""
    if sigma <= 0:
        return image
    from scipy import ndimage

    offsets = np.arange(-2, 3)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    for axis in (1, 2):
        image = ndimage.correlate1d(image, weights, axis=axis, mode="nearest")
    return image


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear values in [0, 1] -> sRGB-encoded (IEC 61966-2-1)."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)


#: The light terms, in the order of `Lighting.factors`.
LIGHTS = ("spot", "sun", "world", "bounce")


@dataclass
class Passes:
    """What the rasteriser drew for one view, pixels flattened row-major (N = H * W) and planar: world `position`
    (3, N), float32; `normal` (3, N), the object's world unit normal, (0, 0, 1) (the floor's) elsewhere; linear
    `albedo` (3, N), the floor's colour on the floor; `hit` (N,), something drawn; `on_object` (N,), the object
    drawn; the image `shape` (H, W); and the object's planar depth seen from the spot (`light_depth`, 0 where none)
    with that view's intrinsics and extrinsics."""

    position: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    hit: np.ndarray
    on_object: np.ndarray
    shape: tuple[int, int]
    light_depth: np.ndarray
    light_K: np.ndarray
    world_to_light: np.ndarray


@dataclass
class Lighting:
    """One view's light before the terms are scaled: term k (in `LIGHTS` order) sends ``albedo * factors[k] *
    colours[k]`` (linear radiance) to the camera from each pixel where something is hit; the camera sees `world`
    elsewhere. `factors` (4, N) float32: per pixel, each term's irradiance / pi per unit of its light's colour
    (unscaled); `colours` (4, 3): each light's linear colour."""

    factors: np.ndarray
    colours: np.ndarray
    albedo: np.ndarray
    hit: np.ndarray
    shape: tuple[int, int]
    world: np.ndarray

    def radiance(self, scales: dict[str, float]) -> np.ndarray:
        """Planar (3, H, W) float32 linear radiance with each term scaled by `scales[term]`."""
        weights = np.array([scales[name] for name in LIGHTS], dtype=np.float32)
        radiance = self.albedo * ((self.colours * weights[:, None]).T @ self.factors)
        radiance[:, ~self.hit] = (self.world * scales["world"]).astype(np.float32)[:, None]
        return radiance.reshape(3, *self.shape)


def light(passes: Passes, spot_position: np.ndarray, spot_rgb: np.ndarray, floor_rgb: np.ndarray, floor_z: float,
          lights: SceneLights) -> Lighting:
    """Each light term's factor at every pixel of `passes` (see `Lighting`), for the spot at `spot_position` with
    colour `spot_rgb` and a floor of colour `floor_rgb` at height `floor_z`."""
    spot_position = np.asarray(spot_position, dtype=np.float32)
    to_point = passes.position - spot_position[:, None]
    distance2 = np.einsum("ij,ij->j", to_point, to_point)
    distance = np.sqrt(distance2)
    axis = -spot_position / np.linalg.norm(spot_position)
    disk = np.arcsin(np.minimum(lights.spot_radius / distance, 1.0))
    cone = spot_cone((axis @ to_point) / distance, disk, lights)
    facing = np.maximum(-np.einsum("ij,ij->j", passes.normal, to_point) / distance, 0.0)
    irradiance = np.float32(lights.spot_energy / (4 * math.pi)) * facing * cone / distance2
    lit = np.flatnonzero(passes.hit & (irradiance > 0))
    if len(lit):
        irradiance[lit] *= spot_visibility(passes.position[:, lit], facing[lit], passes.light_depth, passes.light_K,
                                           passes.world_to_light, lights.spot_radius)
    factors = np.empty((len(LIGHTS), passes.hit.size), dtype=np.float32)
    factors[0] = irradiance / np.float32(math.pi)
    # the sun, the world and the floor's bounce: constant on the floor (normal +Z), per pixel on the object
    on_object = np.flatnonzero(passes.on_object)
    n_z = passes.normal[2, on_object]
    sun_on_floor = lights.sun_energy * float(lights.sun_factor[-1])  # the table's last row: n_z = 1
    factors[1] = sun_on_floor / math.pi
    factors[1, on_object] = lights.sun_energy / math.pi * sun_factor(n_z, lights)
    factors[2] = 1.0
    factors[2, on_object] = (1.0 + n_z) / 2
    factors[3] = 0.0
    factors[3, on_object] = (1.0 - n_z) / 2

    # the floor below the object: lit by the sun, the world and the spot's pool centre (where its axis meets it)
    pool = 0.0
    if axis[2] < -1e-6:
        centre = spot_position + axis * (floor_z - spot_position[2]) / axis[2]
        pool = lights.spot_energy / (4 * math.pi * float(np.sum((centre - spot_position) ** 2))) * -axis[2]
    floor_radiance = floor_rgb * ((sun_on_floor + pool * spot_rgb) / math.pi + lights.world)
    colours = np.stack([spot_rgb, np.ones(3), lights.world, floor_radiance]).astype(np.float32)
    return Lighting(factors, colours, passes.albedo, passes.hit, passes.shape, lights.world)


#: The display table is indexed by a float32's sign, exponent and top 12 mantissa bits: within one index the
#: `filmic` level varies by about 0.01 grey level at most.
_TABLE_BITS = 21


@functools.cache
def _display_table() -> np.ndarray:
    """uint8 display level for each table index (see `_TABLE_BITS`): `filmic` of the middle of the float32 values
    sharing the index, rounded; 0 for negative values, 255 above the curve's last stop (infinity included)."""
    shift = 32 - _TABLE_BITS
    ends = np.array([0.18 * 2.0 ** FILMIC_STOPS[0], 0.18 * 2.0 ** FILMIC_STOPS[-1]], dtype=np.float32)
    low, high = (int(code) for code in ends.view(np.uint32) >> shift)
    table = np.zeros(2**_TABLE_BITS, dtype=np.uint8)
    middles = ((np.arange(low, high + 1, dtype=np.uint32) << shift) | (1 << (shift - 1))).view(np.float32)
    table[low:high + 1] = np.clip(np.rint(filmic(middles.astype(np.float64))), 0, 255)
    table[high + 1:2 ** (_TABLE_BITS - 1)] = 255
    return table


def display(radiance: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Planar linear radiance (3, H, W) -> uint8 (H, W, 3) image: blurred by `blur_sigma` pixels (Cycles' pixel
    filter), then `filmic` rounded to a grey level (through a table; within one grey level of the curve)."""
    blurred = np.ascontiguousarray(blur(radiance, blur_sigma), dtype=np.float32)
    levels = _display_table()[blurred.view(np.uint32) >> (32 - _TABLE_BITS)]
    return np.ascontiguousarray(levels.transpose(1, 2, 0))
