"""A `LoadedAsset` as Blender objects: source files through Blender's own importers, as the original 3DIEBench
generator loads ShapeNet, and everything else built from the canonical trimesh mesh.

Contract of `build_parts(bpy, asset, collection, uniform_material)`:

- ``appearance == "source"`` and a file Blender imports (OBJ with its MTL, glTF/GLB including Draco, PLY, STL):
  the file is imported with axis settings that keep its raw coordinates (glTF's importer always turns Y-up into
  Z-up, which is undone in the pose), so each part's pose is ``asset.file_to_canonical`` composed with the
  importer's own transform. Materials and shading are the importer's: files without normals come out as the OBJ
  importer shades them, meshes without material get Cycles' default diffuse grey, and a part with vertex colours
  but no material gets a diffuse material reading them. A texture whose file is missing is dropped so that its
  material's colour shows (recorded in ``report["textures_missing"]``). If the imported geometry's bounding box
  differs from ``asset.mesh``'s, the asset is built from the mesh instead (recorded in ``report["import_note"]``).
- otherwise (procedural objects, ``uniform``, formats Blender lacks such as OFF): one flat-shaded object built from
  ``asset.mesh``: with ``uniform``, `uniform_material`; with ``source``, its trimesh visuals (a texture image with
  UVs and base colour factor, vertex or face colours, or a single colour) as a diffuse material.

Every datablock created is returned in `BlenderParts.datablocks` so that the caller removes it with the parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orbitset.errors import AssetError

if TYPE_CHECKING:
    import trimesh

    from orbitset.datasets.sources import LoadedAsset

#: Raw glTF (Y-up) coordinates -> the Z-up coordinates Blender's glTF importer writes: (x, y, z) -> (x, -z, y).
GLTF_TO_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
#: Suffix -> Blender importer; OBJ, PLY and STL are imported with forward Y and up Z, which keeps raw coordinates.
IMPORTERS = {".obj": "obj", ".ply": "ply", ".stl": "stl", ".glb": "gltf", ".gltf": "gltf"}
#: bpy.data collections an importer may add to (all of them are diffed around the import).
_DATA_COLLECTIONS = ("objects", "meshes", "materials", "images", "textures", "node_groups", "collections", "cameras",
                     "lights", "armatures", "actions", "curves", "worlds")
COLOUR_ATTRIBUTE = "orbitset_colour"
BOUNDS_TOLERANCE = 1e-3  # relative to the bounding-box diagonal


@dataclass
class BlenderParts:
    """The object's parts: Blender objects (linked to the backend's scene) and each one's 4x4 pose in the canonical
    frame; `datablocks` lists everything created for them; `report` says how the asset was built."""

    objects: list = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    datablocks: list = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def build_parts(bpy, asset: "LoadedAsset", collection, uniform_material) -> BlenderParts:
    """Blender objects for `asset` in `collection` (see the module docstring); AssetError for an unusable mesh."""
    path = Path(asset.path) if asset.path is not None else None
    if asset.appearance == "source" and path is not None and path.suffix.lower() in IMPORTERS and path.is_file():
        parts = _imported(bpy, asset, path, collection)
        note = _bounds_mismatch(parts, asset.mesh)
        if note is None:
            return parts
        bpy.data.batch_remove(parts.datablocks)
        built = _built(bpy, asset, collection, uniform_material)
        built.report["import_note"] = note
        return built
    return _built(bpy, asset, collection, uniform_material)


# --- files through Blender's importers ------------------------------------------------------------------------------


def _run_importer(bpy, kind: str, path: Path) -> np.ndarray:
    """Import `path`; returns the 4x4 matrix from raw file coordinates to the coordinates the importer wrote."""
    from orbitset.render.backends.blender import quiet_stdout

    with quiet_stdout():
        if kind == "obj":
            bpy.ops.wm.obj_import(filepath=str(path), forward_axis="Y", up_axis="Z", validate_meshes=False)
        elif kind == "ply":
            bpy.ops.wm.ply_import(filepath=str(path), forward_axis="Y", up_axis="Z")
        elif kind == "stl":
            bpy.ops.wm.stl_import(filepath=str(path), forward_axis="Y", up_axis="Z")
        else:
            bpy.ops.import_scene.gltf(filepath=str(path), import_scene_as_collection=False)
    return GLTF_TO_BLENDER if kind == "gltf" else np.eye(4)


def _imported(bpy, asset: "LoadedAsset", path: Path, collection) -> BlenderParts:
    before = {name: set(getattr(bpy.data, name)) for name in _DATA_COLLECTIONS}
    kind = IMPORTERS[path.suffix.lower()]
    try:
        file_to_blender = _run_importer(bpy, kind, path)
    except RuntimeError as exc:  # Blender's operators report failures as RuntimeError
        created = [b for name in _DATA_COLLECTIONS for b in getattr(bpy.data, name) if b not in before[name]]
        bpy.data.batch_remove(created)
        raise AssetError(f"{path.name}: Blender's {kind.upper()} importer failed ({str(exc).strip()})") from exc
    created = [b for name in _DATA_COLLECTIONS for b in getattr(bpy.data, name) if b not in before[name]]
    parts = BlenderParts(datablocks=created, report={"importer": f"blender-{kind}"})
    bpy.context.view_layer.update()  # evaluate the imported hierarchy's world matrices
    blender_to_canonical = np.asarray(asset.file_to_canonical, dtype=np.float64) @ np.linalg.inv(file_to_blender)
    new_objects = [b for b in created if isinstance(b, bpy.types.Object)]
    for obj in new_objects:
        if obj.type != "MESH" or len(obj.data.polygons) == 0:
            continue
        pose = blender_to_canonical @ np.asarray(obj.matrix_world, dtype=np.float64)
        obj.parent = None
        for owner in list(obj.users_collection):
            owner.objects.unlink(obj)
        collection.objects.link(obj)
        parts.objects.append(obj)
        parts.poses.append(pose)
    for obj in new_objects:  # empties, cameras, lights, armatures of the file: not part of the object
        if obj not in parts.objects:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
    if not parts.objects:
        bpy.data.batch_remove(created)
        raise AssetError(f"{path.name}: Blender's {kind.upper()} importer found no faces in the file")
    parts.report["textures_missing"] = _drop_missing_textures(bpy, created)
    colour_material = None
    for obj in parts.objects:
        mesh = obj.data
        if not any(mesh.materials) and len(mesh.color_attributes) > 0:  # e.g. a PLY scan with vertex colours
            if colour_material is None:
                colour_material = colour_attribute_material(bpy, "orbitset_vertex_colour", mesh.color_attributes[0].name)
                parts.datablocks.append(colour_material)
            mesh.materials.clear()
            mesh.materials.append(colour_material)
    return parts


def _drop_missing_textures(bpy, created: list) -> list[str]:
    """Remove image-texture nodes whose image file could not be read, so the material's own colour shows instead of
    Cycles' magenta; returns the missing images' paths as the file wrote them, sorted."""
    missing = set()
    for material in (b for b in created if isinstance(b, bpy.types.Material)):
        if material.node_tree is None:
            continue
        for node in list(material.node_tree.nodes):
            image = getattr(node, "image", None) if node.type == "TEX_IMAGE" else None
            if image is None or image.packed_file is not None:
                continue
            if image.source == "FILE" and tuple(image.size) == (0, 0):  # reading .size loads the file if it can
                missing.add(image.filepath)
                material.node_tree.nodes.remove(node)
    return sorted(missing)


def _bounds_mismatch(parts: BlenderParts, mesh: "trimesh.Trimesh") -> str | None:
    """None when the imported parts' canonical bounding box equals `mesh`'s, else a sentence saying how it differs."""
    lows, highs = [], []
    for obj, pose in zip(parts.objects, parts.poses):
        count = len(obj.data.vertices)
        coordinates = np.empty(count * 3, dtype=np.float64)
        obj.data.vertices.foreach_get("co", coordinates)
        points = coordinates.reshape(-1, 3) @ pose[:3, :3].T + pose[:3, 3]
        lows.append(points.min(axis=0))
        highs.append(points.max(axis=0))
    imported = np.array([np.min(lows, axis=0), np.max(highs, axis=0)])
    expected = np.asarray(mesh.bounds, dtype=np.float64)
    tolerance = BOUNDS_TOLERANCE * max(float(np.linalg.norm(expected[1] - expected[0])), 1e-9)
    if np.all(np.abs(imported - expected) <= tolerance):
        return None
    return (f"Blender's importer read bounds {np.round(imported, 4).tolist()}, the loaded mesh has "
            f"{np.round(expected, 4).tolist()}; rendered from the loaded mesh instead")


# --- objects built from the canonical mesh --------------------------------------------------------------------------


def _built(bpy, asset: "LoadedAsset", collection, uniform_material) -> BlenderParts:
    mesh = asset.mesh
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise AssetError(f"Blender backend: expected (N, 3) vertices and (M, 3) triangles, got {vertices.shape} and {faces.shape}")
    if len(vertices) == 0 or len(faces) == 0:
        raise AssetError("Blender backend: the mesh is empty (no vertices or no faces); nothing to render")
    if not np.all(np.isfinite(vertices)):
        raise AssetError("Blender backend: the mesh has NaN or infinite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise AssetError(f"Blender backend: face indices must lie in [0, {len(vertices)}), got [{faces.min()}, {faces.max()}]")
    data = bpy.data.meshes.new("orbitset_object")
    parts = BlenderParts(datablocks=[data], report={"importer": "trimesh"})
    data.vertices.add(len(vertices))
    data.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    data.loops.add(faces.size)
    data.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    data.polygons.add(len(faces))
    data.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    data.update(calc_edges=True)
    data.polygons.foreach_set("use_smooth", np.zeros(len(faces), dtype=bool))  # flat, as files without normals
    material = uniform_material if asset.appearance == "uniform" else _visual_material(bpy, mesh, data, parts)
    if material is not None:
        data.materials.append(material)
    obj = bpy.data.objects.new("orbitset_object", data)
    parts.datablocks.insert(0, obj)
    collection.objects.link(obj)
    parts.objects.append(obj)
    parts.poses.append(np.eye(4))
    return parts


def _visual_material(bpy, mesh: "trimesh.Trimesh", data, parts: BlenderParts):
    """A diffuse material showing `mesh`'s trimesh visuals on Blender mesh `data` (None: Cycles' default grey)."""
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    faces = np.asarray(mesh.faces)
    if kind in ("vertex", "face"):
        if kind == "vertex":
            colours = np.asarray(visual.vertex_colors, dtype=np.float32)[faces.ravel()]
        else:
            colours = np.repeat(np.asarray(visual.face_colors, dtype=np.float32), 3, axis=0)
        attribute = data.color_attributes.new(COLOUR_ATTRIBUTE, "BYTE_COLOR", "CORNER")
        attribute.data.foreach_set("color_srgb", (colours / 255.0).ravel())
        material = colour_attribute_material(bpy, "orbitset_colours", COLOUR_ATTRIBUTE)
        parts.datablocks.append(material)
        parts.report["colours"] = kind
        return material
    if kind != "texture" or getattr(visual, "material", None) is None:
        return None
    pbr = visual.material.to_pbr() if hasattr(visual.material, "to_pbr") else visual.material
    factor = np.asarray(pbr.baseColorFactor if pbr.baseColorFactor is not None else (255, 255, 255, 255), dtype=np.float64)
    factor = factor / 255.0 if factor.max() > 1.0 else factor
    image = getattr(pbr, "baseColorTexture", None)
    uv = getattr(visual, "uv", None)
    material, diffuse = diffuse_material(bpy, "orbitset_texture", _srgb_to_linear(factor[:3]))
    parts.datablocks.append(material)
    if image is None or uv is None or len(uv) != len(mesh.vertices):
        parts.report["colours"] = "material"
        return material
    layer = data.uv_layers.new(name="UVMap")
    layer.data.foreach_set("uv", np.asarray(uv, dtype=np.float32)[faces.ravel()].ravel())
    picture = np.asarray(image.convert("RGBA"), dtype=np.float32)[::-1] / 255.0  # Blender rows go bottom-up
    blender_image = bpy.data.images.new("orbitset_texture", picture.shape[1], picture.shape[0], alpha=True)
    blender_image.pixels.foreach_set(picture.ravel())
    blender_image.pack()
    parts.datablocks.append(blender_image)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = blender_image
    tint = nodes.new("ShaderNodeMix")
    tint.data_type, tint.blend_type = "RGBA", "MULTIPLY"
    sockets = {s.identifier: s for s in tint.inputs}
    sockets["Factor_Float"].default_value = 1.0
    sockets["B_Color"].default_value = (*_srgb_to_linear(factor[:3]), 1.0)
    links.new(texture.outputs["Color"], sockets["A_Color"])
    links.new(next(s for s in tint.outputs if s.identifier == "Result_Color"), diffuse.inputs["Color"])
    parts.report["colours"] = "texture"
    return material


def _srgb_to_linear(rgb: np.ndarray) -> tuple[float, ...]:
    """sRGB-encoded components in [0, 1] -> linear (the colour factors of files are stored as sRGB bytes)."""
    rgb = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    return tuple(np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4).tolist())


def diffuse_material(bpy, name: str, rgb) -> tuple[Any, Any]:
    """A new material whose surface is one Diffuse BSDF of linear colour `rgb` (what Cycles renders for a material
    without nodes); returns (material, diffuse node). Its viewport colour, which Workbench shows, is `rgb` too."""
    material = bpy.data.materials.new(name)
    nodes = material.node_tree.nodes
    for node in list(nodes):
        if node.type != "OUTPUT_MATERIAL":
            nodes.remove(node)
    output = next(node for node in nodes if node.type == "OUTPUT_MATERIAL")
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Color"].default_value = (*rgb, 1.0)
    diffuse.inputs["Roughness"].default_value = 0.0
    material.node_tree.links.new(diffuse.outputs["BSDF"], output.inputs["Surface"])
    material.diffuse_color = (*rgb, 1.0)
    return material, diffuse


def colour_attribute_material(bpy, name: str, attribute: str):
    """A diffuse material coloured by the mesh's colour attribute `attribute`."""
    material, diffuse = diffuse_material(bpy, name, (0.8, 0.8, 0.8))
    reader = material.node_tree.nodes.new("ShaderNodeAttribute")
    reader.attribute_name = attribute
    material.node_tree.links.new(reader.outputs["Color"], diffuse.inputs["Color"])
    return material
