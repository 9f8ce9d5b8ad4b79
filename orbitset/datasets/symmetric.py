"""A procedural asset source of objects whose rotation group is known: ``--assets procedural-symmetric[:N]``.

The default ``procedural`` source is asymmetric on purpose (every rotation target unambiguous); this one is its
opposite, for testing symmetry detection and symmetry-aware evaluation. It is rendered only when asked for, so
existing datasets keep their meaning.

Classes and their groups (`expected_group`): ``ball`` SO3; ``bottle`` (a revolved body with a neck) and ``bowl`` (an
open revolved shell) Cinf; ``can`` (a closed cylinder) Dinf; ``box`` (three different edges) D2; ``prism`` (a regular
n-gon prism, n = 3..8 by instance, taller than wide) Dn; ``square-table`` (a square top on four legs) C4.
Instance ``i`` of a class draws its proportions from ``np.random.default_rng([crc32(class_name), i, 7])``; each part
has one colour (appearance "source"), the same on symmetric parts, so colours keep the group. Frame: Z up, raw
units of about one; `AssetSource.load` centres and scales them.
"""

from __future__ import annotations

import colorsys
import re
import zlib

import numpy as np
import trimesh

from orbitset.datasets.sources import AssetRef, AssetSource, RawAsset
from orbitset.errors import AssetError

_SOURCE_ID = re.compile(r"^([a-z0-9_-]+)/([0-9]+)$")
_SECTIONS = 64  # a revolved or round part has this many sides: continuous within the detector's tolerance


def _rng(class_name: str, instance: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(class_name.encode("ascii")), int(instance), 7])


def _revolved(profile: list[tuple[float, float]]) -> trimesh.Trimesh:
    """The surface swept by a (radius, height) polyline about +Z."""
    return trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=_SECTIONS)


def _ball(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    return [trimesh.creation.icosphere(subdivisions=3, radius=rng.uniform(0.4, 0.6))]


def _bottle(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    radius, body, neck = rng.uniform(0.25, 0.35), rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.14)
    shoulder, top = body + rng.uniform(0.12, 0.2), body + rng.uniform(0.35, 0.45)
    return [_revolved([(0.0, 0.0), (radius, 0.0), (radius, body), (neck, shoulder), (neck, top), (0.0, top)])]


def _bowl(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    radius, depth, foot = rng.uniform(0.45, 0.6), rng.uniform(0.25, 0.4), rng.uniform(0.15, 0.25)
    return [_revolved([(0.0, 0.0), (foot, 0.0), (0.8 * radius, 0.5 * depth), (radius, depth)])]


def _can(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    return [trimesh.creation.cylinder(radius=rng.uniform(0.25, 0.35), height=rng.uniform(0.7, 1.0),
                                      sections=_SECTIONS)]


def _box(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    return [trimesh.creation.box((rng.uniform(0.9, 1.1), rng.uniform(0.55, 0.7), rng.uniform(0.25, 0.4)))]


def prism_sides(instance: int) -> int:
    """Sides of the ``prism`` instance: 3, 4, ..., 8, 3, ..."""
    return 3 + int(instance) % 6


def _prism(rng: np.random.Generator, instance: int) -> list[trimesh.Trimesh]:
    radius = rng.uniform(0.3, 0.4)
    return [trimesh.creation.cylinder(radius=radius, height=radius * rng.uniform(2.2, 2.8),
                                      sections=prism_sides(instance))]


def _square_table(rng: np.random.Generator) -> list[trimesh.Trimesh]:
    side, height, thickness, leg = rng.uniform(0.8, 1.0), rng.uniform(0.6, 0.8), 0.05, rng.uniform(0.05, 0.08)
    top = trimesh.creation.box((side, side, thickness))
    top.apply_translation([0.0, 0.0, height - thickness / 2])
    legs = []
    inset = side / 2 - 1.5 * leg
    for x in (-inset, inset):
        for y in (-inset, inset):
            piece = trimesh.creation.box((leg, leg, height - thickness))
            piece.apply_translation([x, y, (height - thickness) / 2])
            legs.append(piece)
    return [top, trimesh.util.concatenate(legs)]


_BUILDERS = {"ball": _ball, "bottle": _bottle, "bowl": _bowl, "box": _box, "can": _can, "prism": _prism,
             "square-table": _square_table}
CLASSES: tuple[str, ...] = tuple(sorted(_BUILDERS))
_GROUPS = {"ball": "SO3", "bottle": "Cinf", "bowl": "Cinf", "box": "D2", "can": "Dinf", "square-table": "C4"}


def expected_group(class_name: str, instance: int) -> str:
    """The rotation group instance `instance` of `class_name` is built with."""
    return f"D{prism_sides(instance)}" if class_name == "prism" else _GROUPS[class_name]


def make_parts(class_name: str, instance: int) -> list[trimesh.Trimesh]:
    """The parts of one object (raw units, Z up); AssetError for an unknown class or a negative instance."""
    if class_name not in _BUILDERS:
        raise AssetError(f"unknown procedural-symmetric class {class_name!r}; choose one of {', '.join(CLASSES)}")
    if instance < 0:
        raise AssetError(f"procedural-symmetric instance must be >= 0, got {instance}")
    rng = _rng(class_name, instance)
    return _prism(rng, instance) if class_name == "prism" else _BUILDERS[class_name](rng)


class SymmetricSource(AssetSource):
    """`instances_per_class` objects of each class of `CLASSES`, of known rotation group."""

    name = "procedural-symmetric"
    normalise_scale = True

    def __init__(self, instances_per_class: int = 6) -> None:
        if instances_per_class < 1:
            raise AssetError(f"instances_per_class must be at least 1, got {instances_per_class}")
        self.instances_per_class = instances_per_class

    def objects(self) -> list[AssetRef]:
        return [AssetRef(name, f"{i:04d}", f"{name}/{i}") for name in CLASSES for i in range(self.instances_per_class)]

    def load_raw(self, ref: AssetRef, appearance: str = "source") -> RawAsset:
        match = _SOURCE_ID.match(ref.source_id)
        if match is None or int(match.group(2)) >= self.instances_per_class:
            raise AssetError(f"procedural-symmetric source id {ref.source_id!r} is not '<class>/<instance>' with "
                             f"instance < {self.instances_per_class}")
        class_name, instance = match.group(1), int(match.group(2))
        parts = make_parts(class_name, instance)
        mesh = trimesh.util.concatenate(parts)
        if appearance == "uniform":
            return RawAsset(mesh, up_axis="z", info={})
        rng = np.random.default_rng([zlib.crc32(class_name.encode("ascii")), instance, 8])
        colours = []
        for part in parts:
            rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.9))
            colours.append(np.tile(np.round(np.array([*rgb, 1.0]) * 255).astype(np.uint8), (len(part.faces), 1)))
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=np.concatenate(colours))
        return RawAsset(mesh, up_axis="z", info={"colour_source": "face", "parts": len(parts),
                                                 "expected_group": expected_group(class_name, instance)})
