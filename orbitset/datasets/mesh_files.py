"""Reading one mesh file (OBJ+MTL, glTF/GLB, PLY, OFF, STL) into a `RawAsset`: geometry in file coordinates, the
file's up axis, and, when asked, its appearance.

Every mesh of the file is merged into one `trimesh.Trimesh` with its scene-graph transform applied. With
``appearance="source"`` the merged mesh keeps trimesh's visuals: OBJ materials (``Kd`` colours, ``map_Kd`` images,
several materials packed into one), glTF base colour factors and textures, vertex colours (glTF ``COLOR_0``, PLY).
Texture and MTL paths are looked up as written (relative to the file's folder, or absolute), then by file name in
the file's folder; one that is not found is recorded as missing and its material keeps its colour. An OBJ file that
names no material library gets no material, as Blender imports it (trimesh would invent one with a texture when the
file has UVs). Draco-compressed glTF needs DracoPy, checked before trimesh would silently drop the geometry.

Up axes follow Blender's importers: OBJ and glTF files are Y-up (glTF by specification), OFF, PLY and STL Z-up.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbitset.datasets.sources import RawAsset, check_appearance
from orbitset.errors import AssetError

if TYPE_CHECKING:
    import trimesh

#: File suffix -> the up axis its format uses.
UP_AXIS_OF_SUFFIX = {".obj": "y", ".glb": "y", ".gltf": "y", ".off": "z", ".ply": "z", ".stl": "z"}
MESH_SUFFIXES = tuple(UP_AXIS_OF_SUFFIX)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tga", ".tif", ".tiff", ".gif", ".webp")
DRACO_EXTENSION = "KHR_draco_mesh_compression"


_MTLLIB_ARGUMENT = re.compile(rb"[ \t]+([^\r\n]+)")


def mtllib_names(data: bytes) -> list[bytes]:
    """The argument of every line of OBJ `data` starting with ``mtllib``, in order (as the pattern
    ``(?m)^mtllib[ \\t]+([^\\r\\n]+)`` finds them, without matching a pattern at every line of a large file)."""
    names, start = [], data.find(b"mtllib")
    while start >= 0:
        if start == 0 or data[start - 1] == 0x0A:  # at a line's start ("\n" ends lines, as "^" takes them)
            argument = _MTLLIB_ARGUMENT.match(data, start + 6)
            if argument is not None:
                names.append(argument.group(1))
        start = data.find(b"mtllib", start + 6)
    return names


def file_up_axis(path: Path) -> str:
    """The up axis of `path`'s format ("y" or "z")."""
    try:
        return UP_AXIS_OF_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise AssetError(f"{path.name}: unsupported mesh format {path.suffix!r}; use one of {', '.join(MESH_SUFFIXES)}") from None


def _recording_resolver(folder: Path):
    """A trimesh resolver for the files a mesh references (MTL, textures, glTF buffers) that records what it found
    and what it did not. Paths are tried as written, then by file name in `folder`."""
    import trimesh.resolvers

    class RecordingResolver(trimesh.resolvers.Resolver):
        def __init__(self) -> None:
            self.found: list[str] = []
            self.missing: list[str] = []

        def _candidates(self, name: str) -> list[Path]:
            written = name.strip().replace("\\", "/")
            as_written = Path(written) if os.path.isabs(written) else folder / written
            return [as_written, folder / Path(written).name]

        def get(self, name: str) -> bytes:
            for candidate in self._candidates(name):
                if candidate.is_file():
                    self.found.append(name.strip())
                    return candidate.read_bytes()
            self.missing.append(name.strip())
            raise FileNotFoundError(f"{name} (looked in {folder})")

        def write(self, name: str, data) -> None:
            raise AssetError("orbitset never writes beside a source mesh")

        def namespaced(self, namespace: str):
            return _recording_resolver(folder / namespace)

        def keys(self):
            return (p.name for p in folder.iterdir())

    return RecordingResolver()


def gltf_json(path: Path) -> dict:
    """The JSON part of a .gltf or .glb file (of a .glb only its header and JSON chunk are read); {} when it cannot
    be read (trimesh reports the real error when it loads the file)."""
    try:
        if path.suffix.lower() != ".glb":
            return json.loads(path.read_bytes())
        with path.open("rb") as handle:
            header = handle.read(20)
            if header[:4] != b"glTF" or len(header) < 20:
                return {}
            (length,) = struct.unpack_from("<I", header, 12)
            return json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return {}


def check_decoders(path: Path, shown: str) -> None:
    """AssetError naming the package to install when `path` needs a decoder that is missing (Draco for glTF)."""
    if path.suffix.lower() not in (".glb", ".gltf"):
        return
    header = gltf_json(path)
    used = set(header.get("extensionsUsed", [])) | set(header.get("extensionsRequired", []))
    if DRACO_EXTENSION in used and importlib.util.find_spec("DracoPy") is None:
        raise AssetError(
            f"{shown}: the file is Draco-compressed ({DRACO_EXTENSION}) and no Draco decoder is installed; "
            "install it with: pip install DracoPy"
        )


def _colour_source(mesh: "trimesh.Trimesh") -> str:
    """How `mesh`'s visuals colour it: "texture", "material", "vertex", "face" or "none"."""
    kind = getattr(mesh.visual, "kind", None)
    if kind == "texture":
        material = mesh.visual.material
        image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
        return "texture" if image is not None else "material"
    if kind in ("vertex", "face"):
        return kind
    return "none"


def load_mesh_file(path: Path, appearance: str = "source", shown: str | None = None) -> RawAsset:
    """`path` as a RawAsset (file coordinates, the format's up axis); AssetError naming the file as `shown` (a path
    relative to the source root) for a missing, unreadable, empty or non-finite mesh, or a missing decoder."""
    import trimesh

    check_appearance(appearance)
    shown = shown or path.name
    if not path.is_file():
        raise AssetError(f"{shown}: mesh file is missing; check the asset path or re-download the object")
    up_axis = file_up_axis(path)
    check_decoders(path, shown)
    resolver = _recording_resolver(path.parent)
    try:
        # process=False: trimesh would otherwise drop faces with NaN vertices silently; we refuse such meshes instead
        scene = trimesh.load_scene(str(path), skip_materials=appearance == "uniform", process=False, resolver=resolver)
        parts = list(scene.geometry.values())
        mesh = scene.to_mesh()
    except Exception as exc:  # trimesh raises many types for bad bytes; all of them mean "unreadable"
        raise AssetError(f"{shown}: cannot read the mesh ({type(exc).__name__}: {exc}); the file is corrupt or not a mesh") from exc
    if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise AssetError(f"{shown}: the file holds no triangles (empty mesh, or only points/lines)")
    if not np.all(np.isfinite(mesh.vertices)):
        raise AssetError(f"{shown}: the mesh has NaN or infinite vertex coordinates")
    mesh.merge_vertices()
    if appearance == "uniform":
        return RawAsset(mesh, up_axis, {})
    if path.suffix.lower() == ".obj" and mesh.visual.kind == "texture" and not mtllib_names(path.read_bytes()):
        # no material library named: Blender's importer gives the object no material; for a file with UVs trimesh
        # invents a grey one and a texture of it, which is not the file's (vertex colours are kept)
        mesh.visual = trimesh.visual.ColorVisuals(mesh)
        parts = []
    materials = sorted({str(m.name) for m in (getattr(p.visual, "material", None) for p in parts) if m is not None and m.name})
    images = [name for name in resolver.found if name.lower().endswith(IMAGE_SUFFIXES)]
    textured_parts = sum(1 for p in parts if _colour_source(p) == "texture")
    info = {
        "colour_source": _colour_source(mesh),
        "materials": materials,
        "textures": sorted(set(images)),
        "embedded_textures": textured_parts if not images else 0,
        "textures_missing": sorted({n for n in resolver.missing if n.lower().endswith(IMAGE_SUFFIXES)}),
        "files_missing": sorted({n for n in resolver.missing if not n.lower().endswith(IMAGE_SUFFIXES)}),
    }
    return RawAsset(mesh, up_axis, info)
