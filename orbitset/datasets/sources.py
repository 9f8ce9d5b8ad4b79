"""The asset-source interface shared by every mesh collection (procedural, ShapeNetCore, ModelNet, Objaverse, folders).

A source lists objects (class, id) in a deterministic order and loads one as a `LoadedAsset`: the mesh in its
canonical frame, with its appearance, and how the file's coordinates were mapped there. Canonical frame
(DESIGN.md): Z up; the file's up axis is turned to +Z first (Y-up files: ``(x, y, z) -> (x, -z, y)``, as Blender's
OBJ and glTF importers do), then the mesh is centred on its bounding-box centre and, unless the source is already
normalised (ShapeNet), scaled to a unit bounding-box diagonal.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbitset.errors import AssetError

if TYPE_CHECKING:
    import trimesh

_KEY_PART = re.compile(r"[^a-z0-9_-]+")

#: What an object looks like: its own materials, textures and colours ("source"), or one neutral material ("uniform").
APPEARANCES = ("source", "uniform")
#: Up axes a file can have; "y" files are turned to Z-up on load.
UP_AXES = ("y", "z")
#: Y-up -> Z-up, the rotation Blender's OBJ and glTF importers apply: (x, y, z) -> (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def key_part(text: str) -> str:
    """Lower-case `text` and replace every run of characters outside ``[a-z0-9_-]`` by ``-``."""
    part = _KEY_PART.sub("-", text.lower()).strip("-")
    if not part:
        raise AssetError(f"cannot make a sample-key part from {text!r}: it has no letters or digits")
    return part


def check_appearance(appearance: str) -> str:
    """`appearance` if it is one of APPEARANCES, else AssetError."""
    if appearance not in APPEARANCES:
        raise AssetError(f"appearance {appearance!r} is not one of {', '.join(APPEARANCES)}")
    return appearance


def check_up_axis(up_axis: str | None) -> str | None:
    """`up_axis` if it is None or one of UP_AXES, else AssetError."""
    if up_axis is not None and up_axis not in UP_AXES:
        raise AssetError(f"up axis {up_axis!r} is not one of {', '.join(UP_AXES)}")
    return up_axis


@dataclass(frozen=True)
class AssetRef:
    """One object of a source.

    `class_name` and `object_id` use ``[a-z0-9_-]`` only, so that ``f"{class_name}__{object_id}"`` is a valid sample
    key; `source_id` is how the source finds the mesh again (a relative path, or ``class/instance`` for procedural).
    """

    class_name: str
    object_id: str
    source_id: str

    @property
    def key(self) -> str:
        return f"{self.class_name}__{self.object_id}"


@dataclass(frozen=True)
class RawAsset:
    """A mesh as its source stores it (file coordinates) with its appearance, before any axis change or scaling.

    `info` is what meta.json records about the appearance (materials, textures found, textures missing, ...)."""

    mesh: "trimesh.Trimesh"
    up_axis: str
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedAsset:
    """An object ready to render.

    `mesh` is in the canonical frame (Z-up, centred on its bounding-box centre, scaled per the source's rule); it
    carries visuals (TextureVisuals with material and image, or vertex/face colours) when `appearance` is "source",
    plain geometry otherwise. `file_to_canonical` (4x4 float64) maps raw file coordinates to the canonical frame:
    up-axis change, then centring, then scaling. `up_axis` is the file's up axis as applied ("y" or "z"). `info` is
    what meta.json records (materials, textures found, textures missing, ...). `path` is None for procedural objects.
    """

    mesh: "trimesh.Trimesh"
    path: Path | None
    file_to_canonical: np.ndarray
    up_axis: str
    appearance: str
    info: dict

    @property
    def scale(self) -> float:
        """The uniform scale applied (dimensionless)."""
        return float(np.cbrt(abs(np.linalg.det(self.file_to_canonical[:3, :3]))))

    def to_json(self) -> dict:
        """What meta.json records about how the object was loaded."""
        return {
            "up_axis": self.up_axis,
            "scale": self.scale,
            "file_to_canonical": np.asarray(self.file_to_canonical).tolist(),
            "appearance": self.appearance,
            **self.info,
        }


class AssetSource(ABC):
    """A mesh collection. Subclasses set `name` and `normalise_scale` and implement `objects` and `load_raw`."""

    name: str = "source"
    #: Scale meshes to a unit bounding-box diagonal (False for collections that are already normalised, e.g. ShapeNet).
    normalise_scale: bool = True

    @abstractmethod
    def objects(self) -> list[AssetRef]:
        """Every object, in a deterministic order (sorted by class, then id)."""

    @abstractmethod
    def load_raw(self, ref: AssetRef, appearance: str = "source") -> RawAsset:
        """The mesh as stored, with its appearance when `appearance` is "source"; AssetError naming the file for a
        missing or unreadable one."""

    def path_of(self, ref: AssetRef) -> Path | None:
        """The file `ref` is loaded from, or None when it has none (procedural objects)."""
        return None

    def classes(self) -> list[str]:
        """Sorted class names; a class's index is its position here."""
        return sorted({ref.class_name for ref in self.objects()})

    def load(self, ref: AssetRef, appearance: str = "source", up_axis: str | None = None) -> LoadedAsset:
        """`ref` in the canonical frame; `up_axis` overrides the file's own ("y" or "z", None: the source's rule)."""
        check_appearance(appearance)
        raw = self.load_raw(ref, appearance=appearance)
        applied = check_up_axis(up_axis) or raw.up_axis
        mesh, file_to_canonical = canonical(raw.mesh, applied, self.normalise_scale, what=ref.source_id)
        if appearance == "uniform":
            import trimesh

            mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        return LoadedAsset(mesh, self.path_of(ref), file_to_canonical, applied, appearance, dict(raw.info))


def canonical(mesh: "trimesh.Trimesh", up_axis: str, scale_to_unit_diagonal: bool, what: str = "mesh") -> tuple["trimesh.Trimesh", np.ndarray]:
    """`mesh` turned Z-up, centred on its bounding-box centre and optionally scaled to a unit diagonal (a copy, with
    its visuals), and the 4x4 raw -> canonical transform; AssetError for an empty, non-finite or degenerate mesh."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) == 0 or len(mesh.faces) == 0:
        raise AssetError(f"{what}: the mesh is empty (no vertices or faces)")
    if not np.all(np.isfinite(vertices)):
        raise AssetError(f"{what}: the mesh has NaN or infinite vertex coordinates")
    rotation = Y_UP_TO_Z_UP if check_up_axis(up_axis) == "y" else np.eye(3)
    turned = vertices @ rotation.T
    lo, hi = turned.min(axis=0), turned.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0.0:
        raise AssetError(f"{what}: the mesh is degenerate (all vertices coincide)")
    scale = 1.0 / diagonal if scale_to_unit_diagonal else 1.0
    transform = np.eye(4)
    transform[:3, :3] = scale * rotation
    transform[:3, 3] = -scale * (lo + hi) / 2.0
    out = mesh.copy()
    out.apply_transform(transform)  # also turns the file's vertex normals
    return out, transform
