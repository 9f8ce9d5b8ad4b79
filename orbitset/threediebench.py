"""3DIEBench's constants, in one place: its factors, the variants' ranges, and the scene its generator builds.

Values are those of SIE's generator (``data/main.py`` on BlenderProc 2.8, see REFERENCE.md "3DIEBench"). The
render scene's defaults (`orbitset.render.scene`), the shipped recipes, the converter of the published layout and
the test helpers all read them from here. Units: angles in radians, lengths in scene units, light energies in
Blender's units (W for the spot light, W/m^2 for the sun); colours are HSV in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

from orbitset import geometry

HALF_PI = math.pi / 2

#: Per-view factors of 3DIEBench, in latent order: (name, unit, low, high).
FACTORS: tuple[tuple[str, str, float, float], ...] = (
    ("rot_x", "rad", -HALF_PI, HALF_PI),
    ("rot_y", "rad", -HALF_PI, HALF_PI),
    ("rot_z", "rad", -HALF_PI, HALF_PI),
    ("floor_hue", "1", 0.0, 1.0),
    ("spot_theta", "rad", 0.0, math.pi / 4),
    ("spot_phi", "rad", 0.0, 2 * math.pi),
    ("spot_hue", "1", 0.0, 1.0),
)

#: Euler convention of the rotation factors (Blender's XYZ: R = Rz @ Ry @ Rx).
EULER = "xyz"
VIEWS = 50
IMAGE_SIZE = 256

#: 3DIEBench-T: a translation per axis, in the object frame (world offset = R @ t), appended after `FACTORS`.
TRANSLATION_FACTORS: tuple[tuple[str, str, float, float], ...] = tuple(
    (f"trans_{axis}", "scene", -0.5, 0.5) for axis in "xyz"
)

#: 3DIEBench-OOD: each Euler angle uniform on the union of these intervals (the recorded range is [-pi, pi]).
OOD_ROTATION_RANGES: tuple[tuple[float, float], ...] = ((-math.pi, -HALF_PI), (HALF_PI, math.pi))

# --- the scene ----------------------------------------------------------------------------------------------------

#: Camera on a sphere around the origin: distance, polar angle from +Z, azimuth from +X; Blender's default field
#: of view (50 mm lens on a 36 mm sensor) across the image.
CAMERA_DISTANCE = 2.5
CAMERA_THETA = math.pi / 4
CAMERA_PHI = HALF_PI
CAMERA_FOV = 0.691111

#: Floor: a horizontal plane at z = -1, HSV(floor_hue, 0.6, 0.6), purely diffuse. The original's plane is 10000
#: wide; any plane that fills the view renders the same, and a smaller one keeps depth buffers precise.
FLOOR_Z = -1.0
FLOOR_SIZE = 100.0
FLOOR_SATURATION = 0.6
FLOOR_VALUE = 0.6

#: Sun pointing straight down (-Z), wide angle so it casts no hard shadow.
SUN_ENERGY = 1.5
SUN_ANGLE = HALF_PI
SUN_DIRECTION = (0.0, 0.0, -1.0)

#: Spot light at `SPOT_ORBIT_RADIUS` from the origin, aimed at it; HSV(spot_hue, 1.0, 0.8). `SPOT_SOFT_SIZE` is the
#: light's radius (Blender's shadow_soft_size, BlenderProc's default for new lights); `SPOT_BLEND` Blender's default.
SPOT_ENERGY = 500.0
SPOT_SIZE = math.pi / 8
SPOT_BLEND = 0.15
SPOT_SOFT_SIZE = 0.25
SPOT_ORBIT_RADIUS = 4.0
SPOT_SATURATION = 1.0
SPOT_VALUE = 0.8

#: World colour (linear RGB, strength 1) and view transform (BlenderProc's defaults).
BACKGROUND = (0.05, 0.05, 0.05)
VIEW_TRANSFORM = "Filmic"


def camera_extrinsics() -> np.ndarray:
    """4x4 world-to-camera matrix (OpenCV frame) of 3DIEBench's fixed camera."""
    eye = geometry.spherical_to_cartesian(CAMERA_DISTANCE, CAMERA_THETA, CAMERA_PHI)
    return geometry.look_at(np.asarray(eye, dtype=np.float64))


def camera_intrinsics(size: int = IMAGE_SIZE) -> np.ndarray:
    """3x3 intrinsics in pixels (OpenCV centres) of 3DIEBench's camera for a square image of `size` pixels."""
    return geometry.intrinsics_from_fov(CAMERA_FOV, size, size)
