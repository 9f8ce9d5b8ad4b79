"""The asset-source interface shared by every mesh collection (procedural, ShapeNetCore, ModelNet, Objaverse, folders).

A source lists objects (class, id) in a deterministic order and loads one as a `trimesh.Trimesh`. Normalisation
(DESIGN.md): the mesh is centred on its bounding-box centre and, unless the source is already normalised (ShapeNet),
scaled to a unit bounding-box diagonal. The scale and offset applied are returned so that they can be recorded:
``normalised_vertices = (raw_vertices + offset) * scale``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orbitset.errors import AssetError

if TYPE_CHECKING:
    import trimesh

_KEY_PART = re.compile(r"[^a-z0-9_-]+")


def key_part(text: str) -> str:
    """Lower-case `text` and replace every run of characters outside ``[a-z0-9_-]`` by ``-``."""
    part = _KEY_PART.sub("-", text.lower()).strip("-")
    if not part:
        raise AssetError(f"cannot make a sample-key part from {text!r}: it has no letters or digits")
    return part


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
class Normalisation:
    """``normalised = (raw + offset) * scale``; offset in raw units, scale dimensionless."""

    scale: float
    offset: tuple[float, float, float]

    def to_json(self) -> dict:
        return {"scale": self.scale, "offset": list(self.offset)}


class AssetSource(ABC):
    """A mesh collection. Subclasses set `name` and `normalise_scale` and implement `objects` and `load_raw`."""

    name: str = "source"
    #: Scale meshes to a unit bounding-box diagonal (False for collections that are already normalised, e.g. ShapeNet).
    normalise_scale: bool = True

    @abstractmethod
    def objects(self) -> list[AssetRef]:
        """Every object, in a deterministic order (sorted by class, then id)."""

    @abstractmethod
    def load_raw(self, ref: AssetRef) -> "trimesh.Trimesh":
        """The mesh as stored; raise AssetError naming the file for a missing or unreadable one."""

    def classes(self) -> list[str]:
        """Sorted class names; a class's index is its position here."""
        return sorted({ref.class_name for ref in self.objects()})

    def load(self, ref: AssetRef) -> tuple["trimesh.Trimesh", Normalisation]:
        """The mesh centred on its bounding-box centre (and scaled, see `normalise_scale`), and what was applied."""
        mesh = self.load_raw(ref)
        return normalise(mesh, scale_to_unit_diagonal=self.normalise_scale, what=ref.source_id)


def normalise(mesh: "trimesh.Trimesh", scale_to_unit_diagonal: bool, what: str = "mesh") -> tuple["trimesh.Trimesh", Normalisation]:
    """Centre `mesh` on its bounding-box centre and optionally scale it to a unit diagonal; checks it is usable."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) == 0 or len(mesh.faces) == 0:
        raise AssetError(f"{what}: the mesh is empty (no vertices or faces)")
    if not np.all(np.isfinite(vertices)):
        raise AssetError(f"{what}: the mesh has NaN or infinite vertex coordinates")
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    diagonal = float(np.linalg.norm(hi - lo))
    if diagonal <= 0.0:
        raise AssetError(f"{what}: the mesh is degenerate (all vertices coincide)")
    offset = -(lo + hi) / 2.0
    scale = 1.0 / diagonal if scale_to_unit_diagonal else 1.0
    out = mesh.copy()
    out.vertices = (vertices + offset) * scale
    return out, Normalisation(scale=scale, offset=tuple(float(v) for v in offset))
