"""The scene as plain data, and the interface every render backend implements.

A `SceneSpec` is fixed for a whole job (image size, camera, floor, lights, colour management; 3DIEBench's values,
from `orbitset.threediebench`, are the defaults). A `ViewState` is everything that changes per view, already resolved
from the recipe's factors: object pose, floor and spot colours, spot position, and the camera. Backends turn
(asset, ViewState) into arrays and never write files. Colours are linear RGB in [0, 1], converted from the recipe's HSV with `colorsys.hsv_to_rgb`.

Units: lengths in scene units, angles in radians, light energies in Blender's units (W for spot lights, W/m^2 for
the sun), depth in scene units along the camera's z axis.
"""

from __future__ import annotations

import colorsys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from orbitset import geometry
from orbitset import threediebench as tdb

if TYPE_CHECKING:
    from orbitset.datasets.sources import LoadedAsset


@dataclass(frozen=True)
class CameraSpec:
    """A camera on a sphere around `target`, looking at it with +Z up in the image. Defaults: 3DIEBench's camera."""

    distance: float = tdb.CAMERA_DISTANCE
    theta: float = tdb.CAMERA_THETA  # polar angle from +Z
    phi: float = tdb.CAMERA_PHI  # azimuth from +X towards +Y
    fov: float = tdb.CAMERA_FOV  # radians, across the larger image side
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def position(self) -> np.ndarray:
        return np.asarray(geometry.spherical_to_cartesian(self.distance, self.theta, self.phi)) + np.asarray(self.target)

    def extrinsics(self) -> np.ndarray:
        """4x4 world-to-camera, OpenCV frame."""
        return geometry.look_at(self.position(), self.target)


@dataclass(frozen=True)
class FloorSpec:
    """A large horizontal plane at height `z`; its colour per view is HSV(hue, saturation, value)."""

    z: float = tdb.FLOOR_Z
    size: float = tdb.FLOOR_SIZE
    saturation: float = tdb.FLOOR_SATURATION
    value: float = tdb.FLOOR_VALUE
    enabled: bool = True


@dataclass(frozen=True)
class SunSpec:
    """A sun (directional) light shining along `direction` (world frame); `angle` is its angular diameter."""

    energy: float = tdb.SUN_ENERGY
    angle: float = tdb.SUN_ANGLE
    direction: tuple[float, float, float] = tdb.SUN_DIRECTION


@dataclass(frozen=True)
class SpotSpec:
    """A spot light on a sphere of `radius` around the origin aimed at it; colour HSV(hue, saturation, value).
    `soft_size` is the light's own radius (soft shadows and a soft-edged pool; Blender's shadow_soft_size)."""

    energy: float = tdb.SPOT_ENERGY
    spot_size: float = tdb.SPOT_SIZE  # full cone angle
    radius: float = tdb.SPOT_ORBIT_RADIUS
    saturation: float = tdb.SPOT_SATURATION
    value: float = tdb.SPOT_VALUE
    blend: float = tdb.SPOT_BLEND  # soft edge fraction of the cone
    soft_size: float = tdb.SPOT_SOFT_SIZE


@dataclass(frozen=True)
class SceneSpec:
    """Everything fixed for a render job. The defaults are 3DIEBench's scene (256 px).

    `view_transform` names the colour management from scene light to image ("Filmic": Blender's filmic tone curve,
    as BlenderProc renders; "Standard": the plain sRGB transfer function)."""

    width: int = tdb.IMAGE_SIZE
    height: int = tdb.IMAGE_SIZE
    camera: CameraSpec = field(default_factory=CameraSpec)
    floor: FloorSpec = field(default_factory=FloorSpec)
    sun: SunSpec = field(default_factory=SunSpec)
    spot: SpotSpec = field(default_factory=SpotSpec)
    background: tuple[float, float, float] = tdb.BACKGROUND  # world colour (light from everywhere, seen where nothing is hit)
    view_transform: str = tdb.VIEW_TRANSFORM

    def intrinsics(self) -> np.ndarray:
        return geometry.intrinsics_from_fov(self.camera.fov, self.width, self.height)


def hsv_to_rgb(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    """HSV in [0, 1] -> linear RGB in [0, 1] (colorsys; hue wraps around)."""
    return colorsys.hsv_to_rgb(hue % 1.0, saturation, value)


@dataclass(frozen=True)
class ViewState:
    """One view, resolved: the object is drawn at ``x_world = scale * rotation @ x_object + translation``.

    `camera_extrinsics` is the 4x4 OpenCV world-to-camera matrix of this view; `spot_position` is in world units.
    """

    rotation: np.ndarray
    camera_extrinsics: np.ndarray
    floor_rgb: tuple[float, float, float]
    spot_rgb: tuple[float, float, float]
    spot_position: np.ndarray
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0

    def object_to_world(self) -> np.ndarray:
        """4x4 pose of the object (rotation, uniform scale, translation)."""
        pose = np.eye(4)
        pose[:3, :3] = self.scale * np.asarray(self.rotation, dtype=np.float64)
        pose[:3, 3] = self.translation
        return pose


@dataclass
class RenderedView:
    """What a backend returns for one view: uint8 (H, W, 3) RGB, float32 (H, W) depth (0 where the ray hits nothing),
    and a bool (H, W) object mask (True where the object is the first surface hit)."""

    rgb: np.ndarray
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None


class Backend(ABC):
    """A renderer. Built once per worker for a SceneSpec; per object only the asset is swapped; per view only the
    ViewState changes. Implementations import their renderer inside the module that defines them."""

    name: str = "backend"

    def __init__(self, scene: SceneSpec):
        self.scene = scene

    @abstractmethod
    def set_asset(self, asset: "LoadedAsset") -> None:
        """Replace the object (`asset.mesh` is in its canonical frame; its visuals are used when
        `asset.appearance` is "source", one neutral material otherwise)."""

    @abstractmethod
    def render(self, view: ViewState, depth: bool = False, mask: bool = False) -> RenderedView:
        """Render one view; compute depth and mask only when asked."""

    @classmethod
    def image_layers(cls, preset: str) -> tuple[str, ...]:
        """The per-view layers besides RGB ("depth", "mask") this backend renders with `preset`; all by default."""
        return ("depth", "mask")

    def version(self) -> str:
        """Renderer name and version, recorded in each sample's meta.json."""
        return self.name

    def close(self) -> None:
        """Free renderer resources (GL contexts, Blender data)."""
