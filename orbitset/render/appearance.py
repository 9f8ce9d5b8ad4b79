"""Material features the two render backends treat differently, and the sentences meta.json records about them.

Blender renders a source file through its own importers (what the original 3DIEBench generator did), so for
3DIEBench-faithfulness Blender is the reference; the raster backend follows it where it can and says where it cannot.
One decision per feature, for files with materials (OBJ+MTL as Blender 5's OBJ importer reads it; glTF as its glTF
importer does):

- transmission (MTL ``Tf``: Blender's Transmission Weight is the mean of Tf; glTF ``KHR_materials_transmission``):
  Blender renders glass, and with 3DIEBench's 0 transmission bounces it is dark but for its reflections. Raster
  follows: its diffuse colour is scaled by ``1 - transmission`` (`diffuse_weight`); it draws no reflections.
- alpha (MTL ``d`` < 1 or ``map_d``; glTF alphaMode BLEND or MASK): Blender renders the surface see-through;
  raster draws it opaque. (MTL ``Tr`` is ignored by Blender's importer, and so here.)
- emission (MTL ``Ke``, glTF emissiveFactor): Blender renders the glow; raster does not.
- specular (MTL ``Ks`` with ``Ns`` >= 200, i.e. Blender roughness <= 0.55; glTF metallic >= 0.5 or roughness <= 0.4):
  Blender renders highlights and reflections; raster renders diffuse light only. Weaker speculars are recorded by
  neither: their highlights are broad and dim.
- missing textures: both backends show the material's own colour (Blender's magenta placeholder is removed); a
  missing material library (MTL) leaves the object without materials, which both draw in Cycles' default grey
  (`lacks_materials`); no note.

`material_features(asset)` reads these from the asset's file; `appearance_notes(asset)` turns the ones a backend
cannot render into sentences (empty for procedural objects, the uniform appearance and files without materials).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orbitset.datasets.mesh_files import gltf_json, mtllib_names

if TYPE_CHECKING:
    from orbitset.datasets.sources import LoadedAsset

GLOSSY_NS = 200.0  # MTL shininess from which Blender's roughness (1 - sqrt(Ns / 1000)) is <= 0.55
GLOSSY_ROUGHNESS = 0.4
METALLIC = 0.5


@dataclass
class MaterialFeatures:
    """Per feature, the names of the materials that have it (transmission: name -> weight)."""

    transmission: dict[str, float] = field(default_factory=dict)
    alpha: list[str] = field(default_factory=list)
    emission: list[str] = field(default_factory=list)
    specular: list[str] = field(default_factory=list)
    materials: int = 0


def _numbers(values: list[str]) -> list[float]:
    try:
        return [float(v) for v in values]
    except ValueError:
        return []


def _mtl_features(text: str, features: MaterialFeatures) -> None:
    name, props = None, {}

    def close() -> None:
        if name is None:
            return
        features.materials += 1
        tf = _numbers(props.get("tf", []))
        if tf and sum(tf) / len(tf) > 0.0:
            features.transmission[name] = sum(tf) / len(tf)
        d = _numbers(props.get("d", []))
        if (d and d[0] < 1.0) or "map_d" in props:
            features.alpha.append(name)
        ke = _numbers(props.get("ke", []))
        if ke and max(ke) > 0.0:
            features.emission.append(name)
        ks, ns = _numbers(props.get("ks", [])), _numbers(props.get("ns", []))
        if ks and max(ks) > 0.0 and ns and ns[0] >= GLOSSY_NS:
            features.specular.append(name)

    for line in text.splitlines():
        parts = line.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0].lower()
        if key == "newmtl":
            close()
            name, props = " ".join(parts[1:]), {}
        elif name is not None:
            props[key] = parts[1:]
    close()


def _obj_features(path: Path) -> MaterialFeatures:
    features = MaterialFeatures()
    libraries = mtllib_names(path.read_bytes())
    for library in libraries:
        written = library.decode("utf-8", "replace").strip().replace("\\", "/")
        for candidate in (path.parent / written, path.parent / Path(written).name):
            if candidate.is_file():
                _mtl_features(candidate.read_text("utf-8", "replace"), features)
                break
    return features


def _gltf_features(path: Path) -> MaterialFeatures:
    features = MaterialFeatures()
    for index, material in enumerate(gltf_json(path).get("materials", [])):
        name = material.get("name") or f"material {index}"
        features.materials += 1
        extensions = material.get("extensions", {})
        transmission = extensions.get("KHR_materials_transmission", {}).get("transmissionFactor", 0.0)
        if transmission > 0.0:
            features.transmission[name] = float(transmission)
        if material.get("alphaMode", "OPAQUE") != "OPAQUE":
            features.alpha.append(name)
        strength = extensions.get("KHR_materials_emissive_strength", {}).get("emissiveStrength", 1.0)
        if max(material.get("emissiveFactor", [0.0])) * strength > 0.0:
            features.emission.append(name)
        pbr = material.get("pbrMetallicRoughness", {})
        if pbr.get("metallicFactor", 1.0) >= METALLIC or pbr.get("roughnessFactor", 1.0) <= GLOSSY_ROUGHNESS:
            features.specular.append(name)
    return features


def material_features(asset: "LoadedAsset") -> MaterialFeatures:
    """The features of `asset`'s file materials (none for procedural objects or the uniform appearance)."""
    path = Path(asset.path) if asset.path is not None else None
    if asset.appearance != "source" or path is None or not path.is_file():
        return MaterialFeatures()
    suffix = path.suffix.lower()
    try:
        if suffix == ".obj":
            return _obj_features(path)
        if suffix in (".glb", ".gltf"):
            return _gltf_features(path)
    except (OSError, ValueError):  # an unreadable material description: the loader reports the file
        return MaterialFeatures()
    return MaterialFeatures()


def lacks_materials(asset: "LoadedAsset") -> bool:
    """Whether every material library the file names is missing (Blender then imports no material at all)."""
    missing = [name for name in asset.info.get("files_missing", []) if name.lower().endswith(".mtl")]
    return bool(missing) and not asset.info.get("textures") and asset.appearance == "source"


def diffuse_weight(features: MaterialFeatures) -> float:
    """The factor raster gives the object's diffuse colour: ``1 - transmission`` when every material transmits
    (the mean weight), 1 otherwise (a mesh of mixed materials is drawn as the opaque ones, and noted)."""
    if features.materials and len(features.transmission) == features.materials:
        return 1.0 - sum(features.transmission.values()) / len(features.transmission)
    return 1.0


def _named(names) -> str:
    names = sorted(names)
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"material{'s' if len(names) > 1 else ''} {shown}"


def appearance_notes(asset: "LoadedAsset") -> list[str]:
    """Sentences saying what about `asset` one backend renders and the other cannot (see the module docstring)."""
    features = material_features(asset)
    notes = []
    if features.transmission:
        weights = sorted(set(round(w, 2) for w in features.transmission.values()))
        how = ("raster darkens its diffuse colour by the same weight and draws no reflections"
               if diffuse_weight(features) < 1.0 else "raster draws it opaque (the object's other materials are not)")
        notes.append(f"transmission {', '.join(map(str, weights))} ({_named(features.transmission)}): Blender renders "
                     f"glass, dark with 3DIEBench's 0 transmission bounces but for its reflections; {how}")
    if features.alpha:
        notes.append(f"alpha ({_named(features.alpha)}): Blender renders it see-through; raster draws it opaque")
    if features.emission:
        notes.append(f"emission ({_named(features.emission)}): Blender renders its glow; raster does not")
    if features.specular:
        notes.append(f"specular ({_named(features.specular)}): Blender renders highlights and reflections; raster "
                     "renders diffuse light only")
    return notes


APPEARANCE_FEATURES = ("transmission", "alpha", "emission", "specular")


def note_features(notes: list[str]) -> list[str]:
    """The features (`APPEARANCE_FEATURES`) that `appearance_notes` sentences are about, for counting."""
    return [feature for feature in APPEARANCE_FEATURES if any(note.startswith(feature) for note in notes)]
