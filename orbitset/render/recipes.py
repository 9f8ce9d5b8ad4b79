"""Recipes: which factors are drawn per view (names, units, ranges), the scene, image size, views and layers.

A recipe is plain data (a frozen dataclass, loadable from YAML) and is hashed into the manifest
(`Recipe.hash`: sha256 of its canonical JSON). Shipped recipes: ``3diebench``, ``3diebench-t``, ``3diebench-ood``
and ``so3`` (see `SHIPPED`); any other name is read as a YAML file.

The shipped recipes use 3DIEBench's scene (`orbitset.threediebench`) as its original generator renders it (SIE's
``data/main.py`` on BlenderProc 2.8 and Blender 4.2; ``benchmarks/fidelity.py`` compares the two view by view). What
differs on purpose: the floor plane is 100 units wide instead of 10000 (it fills the view either way, and depth
buffers stay precise), and the denoiser is Cycles' own OpenImageDenoise with albedo and normal guides instead of the
same denoiser run as a compositor node.

Factor vocabulary (one column of ``latents.npy`` each, in the recipe's order; units in brackets):

- ``rot_x``, ``rot_y``, ``rot_z`` [rad]: Euler angles, convention `Recipe.euler` (3DIEBench: "xyz", R = Rz Ry Rx)
- ``quat_x``, ``quat_y``, ``quat_z``, ``quat_w`` [1]: a uniform (Haar) rotation of SO(3), canonical (w >= 0);
  declared with ``rotation: so3`` instead of Euler factors
- ``trans_x``, ``trans_y``, ``trans_z`` [scene]: translation, in the object frame (world offset = R @ t, 3DIEBench-T)
  or the world frame (`Recipe.translation_frame`)
- ``scale`` [1]: uniform object scale
- ``floor_hue``, ``spot_hue`` [1]: hues of the floor and the spot light
- ``spot_theta``, ``spot_phi`` [rad]: spot light polar angle and azimuth on its sphere
- ``cam_elevation``, ``cam_azimuth`` [rad], ``cam_distance`` [scene]: camera orbit around its target
  (elevation = pi/2 - polar angle)

A factor that a recipe does not draw takes its value from `Recipe.fixed` or, failing that, from `DEFAULT_VALUES`
(the camera ones from the scene's camera). Each factor is uniform on the union of its intervals.

YAML form (every field optional except ``name`` and ``factors``/``rotation``; angles may be written as ``pi/2``)::

    name: my-orbits
    views: 24
    size: 128
    rotation: so3               # or leave out and list rot_x/rot_y/rot_z factors
    factors:
      - {name: floor_hue, low: 0, high: 1}
      - {name: trans_z, ranges: [[-0.2, -0.1], [0.1, 0.2]]}
    fixed: {spot_theta: 0.3}
    layers: [mask, points]
    appearance: source          # or uniform: one grey material for every object (shape-only studies)
    camera: {distance: 3.0, fov: 0.6}
    floor: {enabled: false}
    view_transform: Standard    # colour management (default Filmic, as 3DIEBench)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orbitset import threediebench
from orbitset.datasets.sources import APPEARANCES
from orbitset.errors import RenderError
from orbitset.render.scene import CameraSpec, FloorSpec, SceneSpec, SpotSpec, SunSpec

HALF_PI = math.pi / 2
EULER_FACTORS = ("rot_x", "rot_y", "rot_z")
QUAT_FACTORS = ("quat_x", "quat_y", "quat_z", "quat_w")
TRANSLATION_FACTORS = ("trans_x", "trans_y", "trans_z")

#: Every factor a recipe may draw, and its unit.
FACTOR_UNITS: dict[str, str] = {
    **{name: "rad" for name in EULER_FACTORS},
    **{name: "1" for name in QUAT_FACTORS},
    **{name: "scene" for name in TRANSLATION_FACTORS},
    "scale": "1",
    "floor_hue": "1",
    "spot_theta": "rad",
    "spot_phi": "rad",
    "spot_hue": "1",
    "cam_elevation": "rad",
    "cam_azimuth": "rad",
    "cam_distance": "scene",
}

#: Values of factors a recipe does not draw (camera factors default to the scene's camera instead).
DEFAULT_VALUES: dict[str, float] = {
    "rot_x": 0.0, "rot_y": 0.0, "rot_z": 0.0, "trans_x": 0.0, "trans_y": 0.0, "trans_z": 0.0, "scale": 1.0,
    "floor_hue": 0.0, "spot_theta": 0.0, "spot_phi": 0.0, "spot_hue": 0.0,
}

LAYERS = ("depth", "mask", "points")
IMAGE_FORMATS = ("jpg", "png", "webp")
ROTATIONS = ("euler", "so3", "none")


@dataclass(frozen=True)
class FactorSpec:
    """One per-view factor: uniform on the union of `ranges` (closed-open intervals (low, high))."""

    name: str
    ranges: tuple[tuple[float, float], ...]

    @property
    def unit(self) -> str:
        return FACTOR_UNITS[self.name]

    @property
    def low(self) -> float:
        return min(low for low, _ in self.ranges)

    @property
    def high(self) -> float:
        return max(high for _, high in self.ranges)


@dataclass(frozen=True)
class Recipe:
    """A render recipe (see the module docstring). `factors` excludes the quaternion of ``rotation="so3"``."""

    name: str
    factors: tuple[FactorSpec, ...] = ()
    rotation: str = "euler"
    euler: str = "xyz"
    translation_frame: str = "object"
    views: int = 50
    size: int = 256
    image_format: str = "jpg"
    jpeg_quality: int = 90
    layers: tuple[str, ...] = ("mask", "points")
    appearance: str = "source"  # "source": each object's own materials, textures, colours; "uniform": one grey
    points: int = 2048
    depth_unit: float = 0.001
    fixed: tuple[tuple[str, float], ...] = ()
    scene: SceneSpec = field(default_factory=SceneSpec)

    def __post_init__(self) -> None:
        self.check()

    # --- derived views of the recipe -----------------------------------------------------------------------------

    @property
    def factor_names(self) -> list[str]:
        """Names of the latent columns, in order (the quaternion first for so3 recipes)."""
        quat = list(QUAT_FACTORS) if self.rotation == "so3" else []
        return quat + [f.name for f in self.factors]

    @property
    def factor_units(self) -> list[str]:
        return [FACTOR_UNITS[name] for name in self.factor_names]

    def factor_ranges(self) -> list[tuple[str, str, float, float]]:
        """(name, unit, low, high) of every latent column (quaternion components span [-1, 1])."""
        quat = [(name, "1", -1.0, 1.0) for name in QUAT_FACTORS] if self.rotation == "so3" else []
        return quat + [(f.name, f.unit, f.low, f.high) for f in self.factors]

    def scene_spec(self) -> SceneSpec:
        """The scene at this recipe's image size."""
        return dataclasses.replace(self.scene, width=self.size, height=self.size)

    def with_overrides(
        self, *, views: int | None = None, size: int | None = None, layers: tuple[str, ...] | None = None,
        appearance: str | None = None,
    ) -> "Recipe":
        """A copy with other views, size, layers or appearance (None keeps the recipe's)."""
        changes: dict[str, Any] = {}
        if appearance is not None:
            changes["appearance"] = appearance
        if views is not None:
            changes["views"] = int(views)
        if size is not None:
            changes["size"] = int(size)
        if layers is not None:
            changes["layers"] = tuple(layers)
        return dataclasses.replace(self, **changes) if changes else self

    # --- checks, JSON and hash -------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise RenderError saying what is wrong with this recipe and how to fix it."""
        where = f"recipe {self.name!r}"
        names = [f.name for f in self.factors]
        unknown = [n for n in names if n not in FACTOR_UNITS or n in QUAT_FACTORS]
        if unknown:
            allowed = ", ".join(n for n in FACTOR_UNITS if n not in QUAT_FACTORS)
            raise RenderError(f"{where}: unknown factors {unknown}; allowed: {allowed} (use 'rotation: so3' for quaternions)")
        if len(set(names)) != len(names):
            raise RenderError(f"{where}: a factor is listed twice in {names}")
        if self.rotation not in ROTATIONS:
            raise RenderError(f"{where}: rotation {self.rotation!r} is not one of {ROTATIONS}")
        if self.rotation == "so3" and any(n in EULER_FACTORS for n in names):
            raise RenderError(f"{where}: 'rotation: so3' draws the whole rotation; remove the rot_x/rot_y/rot_z factors")
        if self.rotation == "none" and any(n in EULER_FACTORS for n in names):
            raise RenderError(f"{where}: rotation 'none' cannot have Euler factors; use rotation 'euler'")
        if not re.fullmatch(r"[xyz]{3}|[XYZ]{3}", self.euler) or len(set(self.euler.lower())) != 3:
            raise RenderError(f"{where}: euler convention {self.euler!r} must be 3 distinct axes, e.g. 'xyz' (extrinsic) or 'XYZ'")
        if self.translation_frame not in ("object", "world"):
            raise RenderError(f"{where}: translation_frame must be 'object' or 'world', got {self.translation_frame!r}")
        for spec in self.factors:
            if not spec.ranges or any(not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) for lo, hi in spec.ranges):
                raise RenderError(f"{where}: factor {spec.name!r} needs finite intervals with low < high, got {spec.ranges}")
        if not 1 <= self.views <= 1000:
            raise RenderError(f"{where}: views must be in 1..1000, got {self.views}")
        if not 8 <= self.size <= 8192:
            raise RenderError(f"{where}: size must be in 8..8192 pixels, got {self.size}")
        if self.image_format not in IMAGE_FORMATS:
            raise RenderError(f"{where}: image_format {self.image_format!r} is not one of {IMAGE_FORMATS}")
        bad_layers = [layer for layer in self.layers if layer not in LAYERS]
        if bad_layers:
            raise RenderError(f"{where}: unknown layers {bad_layers}; choose from {LAYERS}")
        if self.appearance not in APPEARANCES:
            raise RenderError(f"{where}: appearance {self.appearance!r} is not one of {APPEARANCES}")
        if self.points < 1:
            raise RenderError(f"{where}: points must be at least 1, got {self.points}")
        bad_fixed = [name for name, _ in self.fixed if name not in FACTOR_UNITS or name in QUAT_FACTORS]
        if bad_fixed:
            raise RenderError(f"{where}: fixed values for unknown factors {bad_fixed}")

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON-able form (what the manifest stores and `hash` digests)."""
        data = dataclasses.asdict(self)
        data["factors"] = [{"name": f.name, "unit": f.unit, "ranges": [list(r) for r in f.ranges]} for f in self.factors]
        data["fixed"] = dict(self.fixed)
        data["layers"] = list(self.layers)
        return json.loads(json.dumps(data))  # tuples -> lists, keys as strings

    def hash(self) -> str:
        """sha256 hex of the canonical JSON (sorted keys, no spaces): equal recipes, equal hashes."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "recipe") -> "Recipe":
        """Build a recipe from its YAML/JSON form (see the module docstring); RenderError names the bad entry."""
        if not isinstance(data, dict) or "name" not in data:
            raise RenderError(f"{source}: a recipe is a mapping with at least 'name' and 'factors' (or 'rotation: so3')")
        scene_keys = ("camera", "floor", "sun", "spot", "background", "view_transform")
        scene = {k: data[k] for k in scene_keys if k in data}
        data = {k: v for k, v in data.items() if k not in scene_keys}
        known = {f.name for f in dataclasses.fields(cls)} - {"scene"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RenderError(f"{source}: unknown recipe keys {unknown}; known keys: {sorted(known) + list(scene_keys)}")
        values = dict(data)
        try:
            values["factors"] = tuple(_factor_from(entry) for entry in data.get("factors") or ())
            values["fixed"] = tuple(sorted((str(k), _number(v)) for k, v in (data.get("fixed") or {}).items()))
            values["layers"] = tuple(data.get("layers", cls.layers))
            values["scene"] = _scene_from(scene)
        except (TypeError, ValueError, KeyError) as exc:
            raise RenderError(f"{source}: malformed recipe ({type(exc).__name__}: {exc})") from exc
        return cls(**values)


def _number(value: Any) -> float:
    """A float, or a string like ``pi``, ``-pi/2``, ``2*pi``, ``0.25*pi``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*(-)?\s*(\d+(?:\.\d*)?)?\s*\*?\s*pi\s*(?:/\s*(\d+(?:\.\d*)?))?\s*", str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a number or a multiple of pi such as '-pi/2'")
    sign = -1.0 if match.group(1) else 1.0
    factor = float(match.group(2)) if match.group(2) else 1.0
    divisor = float(match.group(3)) if match.group(3) else 1.0
    return sign * factor * math.pi / divisor


def _factor_from(entry: Any) -> FactorSpec:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ValueError(f"factor entry {entry!r} must be a mapping with 'name' and 'low'/'high' or 'ranges'")
    if "ranges" in entry:
        ranges = tuple((_number(lo), _number(hi)) for lo, hi in entry["ranges"])
    else:
        ranges = ((_number(entry["low"]), _number(entry["high"])),)
    return FactorSpec(str(entry["name"]), ranges)


def _scene_from(data: dict[str, Any]) -> SceneSpec:
    parts = {"camera": CameraSpec, "floor": FloorSpec, "sun": SunSpec, "spot": SpotSpec}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in parts:
            values[key] = parts[key](**{k: _number(v) if not isinstance(v, (bool, list)) else v for k, v in value.items()})
        elif key == "background":
            values[key] = tuple(float(v) for v in value)
        elif key == "view_transform":
            values[key] = str(value)
        else:
            raise ValueError(f"unknown scene entry {key!r}; known: camera, floor, sun, spot, background, view_transform")
    for key in ("camera", "sun"):
        if key in values:
            spec = values[key]
            for name in ("target", "direction"):
                if hasattr(spec, name) and isinstance(getattr(spec, name), list):
                    values[key] = dataclasses.replace(spec, **{name: tuple(float(v) for v in getattr(spec, name))})
    return SceneSpec(**values)


def _euler_recipe(name: str, angle_ranges: tuple[tuple[float, float], ...], extra: tuple[FactorSpec, ...] = ()) -> Recipe:
    rotation = tuple(FactorSpec(axis, angle_ranges) for axis in EULER_FACTORS)
    rest = tuple(FactorSpec(n, ((lo, hi),)) for n, _, lo, hi in threediebench.FACTORS[3:])
    return Recipe(name=name, factors=rotation + rest + extra)


def _shipped() -> dict[str, Recipe]:
    translation = tuple(FactorSpec(n, ((lo, hi),)) for n, _, lo, hi in threediebench.TRANSLATION_FACTORS)
    lights = tuple(FactorSpec(n, ((lo, hi),)) for n, _, lo, hi in threediebench.FACTORS[3:])
    in_range = ((-HALF_PI, HALF_PI),)
    return {
        "3diebench": _euler_recipe("3diebench", in_range),
        "3diebench-t": _euler_recipe("3diebench-t", in_range, translation),
        "3diebench-ood": _euler_recipe("3diebench-ood", threediebench.OOD_ROTATION_RANGES),
        "so3": Recipe(name="so3", rotation="so3", factors=lights),
    }


#: The recipes shipped with orbitset, by name.
SHIPPED: dict[str, Recipe] = _shipped()


def get_recipe(name_or_path: "str | Path | Recipe") -> Recipe:
    """A shipped recipe by name, or a recipe read from a YAML (or JSON) file; RenderError if neither."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    text = str(name_or_path)
    if text in SHIPPED:
        return SHIPPED[text]
    path = Path(text).expanduser()
    if not path.is_file():
        raise RenderError(f"unknown recipe {text!r}: not a shipped recipe ({', '.join(SHIPPED)}) nor a YAML file")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RenderError(f"recipe file {path}: invalid YAML ({exc})") from exc
    return Recipe.from_dict(data, source=f"recipe file {path}")
