"""Croissant 1.1 metadata (``croissant.json``) of an orbitset dataset.

The shards are FileObjects (tar archives with their sha256); the members of the samples, matched by name inside
them, are FileSets (view images, latents, rotations, ...); RecordSets describe one record per sample (key, class,
and each factor as the array of its values over the views), one per view image, and the class names. The
Responsible-AI (``rai:``) properties that the manifest determines are filled in: how the data was made, what is
missing, and that there is no personal data. Written as plain JSON; `mlcroissant` (the "publish" extra) validates it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orbitset.manifests.model import write_json_atomic
from orbitset.publish.facts import CITATION_3DIEBENCH, DatasetFacts

CROISSANT_NAME = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
#: The JSON-LD context of Croissant 1.1 (as the specification's examples and mlcroissant write it).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
_KEY_FROM_NAME = r"^([^.]+)\..*$"  # webdataset's rule: the sample key is the member name up to its first dot
_VIEW_FROM_NAME = r"^[^.]+\.(\d{3})\.[a-z]+$"
_IMAGE_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def _member_set(name: str, pattern: str, encoding: str, shards: list[str], description: str) -> dict[str, Any]:
    return {"@type": "cr:FileSet", "@id": f"{name}-members", "name": f"{name}-members", "description": description,
            "containedIn": [{"@id": shard} for shard in shards], "encodingFormat": encoding, "includes": pattern}


def _from_members(file_set: str, prop: str = "content", regex: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"fileSet": {"@id": f"{file_set}-members"}, "extract": {"fileProperty": prop}}
    if regex is not None:
        source["transform"] = {"regex": regex}
    return source


def _field(record_set: str, name: str, data_type: str, description: str, source: dict[str, Any] | None = None,
           **extra: Any) -> dict[str, Any]:
    out = {"@type": "cr:Field", "@id": f"{record_set}/{name}", "name": name, "description": description,
           "dataType": data_type, **extra}
    if source is not None:
        out["source"] = source
    return out


def _rai(facts: DatasetFacts) -> dict[str, Any]:
    manifest = facts.manifest
    made = (
        f"Converted from the published images of {manifest.name} (their latents and splits kept as published)."
        if facts.converted_original else
        f"Rendered by orbitset {manifest.software.get('orbitset', '')} with the {manifest.recipe.get('name', manifest.name)!r} "
        f"recipe (sha256 {manifest.recipe_hash or 'not recorded'}), renderer {manifest.software.get('renderer', 'unknown')}, "
        f"seed {manifest.seed}; meshes from the {manifest.extra.get('assets', 'recorded')} asset source."
    )
    failures = "; ".join(f"{f.object}: {f.reason}" for f in manifest.failures[:20])
    missing = (f"{len(manifest.failures)} object(s) could not be produced and are absent: {failures}"
               if manifest.failures else "None: every object of the recipe was produced.")
    factors = ", ".join(f"{f.name} [{f.unit}]" for f in manifest.factors)
    return {
        "rai:dataCollection": made,
        "rai:dataCollectionType": ["Synthetic data" if not facts.converted_original else "Secondary data analysis"],
        "rai:dataCollectionMissingData": missing,
        "rai:dataCollectionRawData": f"3D meshes from the asset source {manifest.extra.get('assets', manifest.name)!r}.",
        "rai:dataPreprocessingProtocol": [
            "Each mesh is centred and scaled into the unit sphere before rendering (meta.json 'normalisation').",
        ],
        "rai:dataAnnotationProtocol": (
            f"No human annotation. Every view's labels are the values it was rendered with ({factors}), recorded "
            "exactly; the class is the mesh's category."
        ),
        "rai:annotationsPerItem": f"One vector of {len(manifest.factors)} factors and one rotation matrix per view; one class per object.",
        "rai:machineAnnotationTools": [f"orbitset {manifest.software.get('orbitset', '')}".strip()],
        "rai:personalSensitiveInformation": "None: the images show rendered 3D objects, no people.",
        "rai:dataUseCases": [
            "Training and evaluating invariant and equivariant representations (pairs of views with their known relative "
            "transformation), classification probes and factor regression."
        ],
        "rai:dataLimitations": [
            "Synthetic renders of single objects on a plain floor: not representative of natural photographs."
        ],
        "rai:dataBiases": [f"Class counts per split are those of the asset source: {dict(sorted(_class_totals(facts).items()))}."],
    }


def _class_totals(facts: DatasetFacts) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, name), count in facts.counts.items():
        totals[name] = totals.get(name, 0) + count
    return totals


def croissant_metadata(facts: DatasetFacts, *, license: str, url: str | None = None,
                       description: str | None = None) -> dict[str, Any]:
    """The Croissant 1.1 JSON-LD document of the dataset `facts` describes (see the module docstring).

    `license` is an SPDX-style identifier or URL; `url` where the dataset is published (default: the folder)."""
    manifest = facts.manifest
    shards = [entry.name for entry in manifest.shards]
    distribution: list[dict[str, Any]] = [
        {"@type": "cr:FileObject", "@id": entry.name, "name": entry.name, "contentUrl": entry.name,
         "contentSize": f"{entry.bytes} B", "encodingFormat": "application/x-tar", "sha256": entry.sha256,
         "description": f"{entry.split} shard: {entry.objects} objects, {entry.views} views"}
        for entry in manifest.shards
    ]
    image = _IMAGE_TYPES.get(facts.image_format, f"image/{facts.image_format}")
    members = [
        ("view-images", f"*.{facts.image_format}", image, "One image per view: <key>.<view:03d>." + facts.image_format),
        ("latents", "*.latents.npy", "application/x-npy",
         "(V, F) float64 array: the factor values of each view, columns in the order of the factors."),
        ("rotations", "*.rotations.npy", "application/x-npy", "(V, 3, 3) float64: the object rotation of each view."),
        ("meta", "*.meta.json", "application/json", "Class, factor names and units, renderer and recipe of the sample."),
        ("camera", "*.camera.json", "application/json", "Camera intrinsics K and extrinsics (OpenCV convention)."),
        ("labels", "*.cls", "text/plain", "The class index as decimal text."),
    ]
    layers = facts.layers()
    if "points" in layers:
        members.append(("points", "*.points.npy", "application/x-npy",
                        "(N, 6) float32: surface points and unit normals in the object's canonical frame."))
    if "mask" in layers:
        members.append(("masks", "*.mask.png", "image/png", "8-bit object mask per view (255 = object)."))
    if "depth" in layers:
        members.append(("depths", "*.depth.png", "image/png", "16-bit depth per view, in meta.json depth_unit."))
    if "translations" in layers:
        members.append(("translations", "*.translations.npy", "application/x-npy", "(V, 3) float64 object translations."))
    distribution += [_member_set(name, pattern, encoding, shards, text) for name, pattern, encoding, text in members]

    views = facts.views
    sample_fields = [_field("samples", "key", "sc:Text", "Sample key '<class>__<object>' (member names up to the first dot).",
                            _from_members("latents", "filename", _KEY_FROM_NAME))]
    for column, factor in enumerate(manifest.factors):
        rng = f" drawn from [{factor.low:g}, {factor.high:g}]" if factor.low is not None and factor.high is not None else ""
        sample_fields.append(_field(
            "samples", factor.name, "sc:Float",
            f"Factor {factor.name} of each view, unit {factor.unit!r}{rng}: column {column} of latents.npy.",
            _from_members("latents"), isArray=True, arrayShape=str(views),
        ))
    label_fields = [
        _field("labels", "key", "sc:Text", "Sample key.", _from_members("labels", "filename", _KEY_FROM_NAME),
               references={"field": {"@id": "samples/key"}}),
        _field("labels", "class_index", "sc:Integer", "Class index into the 'classes' record set.",
               _from_members("labels"), references={"field": {"@id": "classes/index"}}),
    ]
    rotation_fields = [
        _field("rotations", "key", "sc:Text", "Sample key.", _from_members("rotations", "filename", _KEY_FROM_NAME),
               references={"field": {"@id": "samples/key"}}),
        _field("rotations", "rotations", "sc:Float", "Object rotation matrix of each view (object -> world).",
               _from_members("rotations"), isArray=True, arrayShape=f"{views},3,3"),
    ]
    view_fields = [
        _field("views", "key", "sc:Text", "Key of the sample the view belongs to.",
               _from_members("view-images", "filename", _KEY_FROM_NAME)),
        _field("views", "view_index", "sc:Integer", "Index of the view within its sample.",
               _from_members("view-images", "filename", _VIEW_FROM_NAME)),
        _field("views", "image", "sc:ImageObject", "The rendered view.", _from_members("view-images")),
    ]
    class_fields = [_field("classes", "index", "sc:Integer", "Class index (the 'cls' member of a sample)."),
                    _field("classes", "name", "sc:Text", "Class name.")]
    record_sets = [
        {"@type": "cr:RecordSet", "@id": "classes", "name": "classes", "description": "The class names by index.",
         "key": {"@id": "classes/index"}, "field": class_fields,
         "data": [{"classes/index": i, "classes/name": name} for i, name in enumerate(manifest.classes)]},
        {"@type": "cr:RecordSet", "@id": "samples", "name": "samples",
         "description": f"One record per object sample: its key, class, and every factor over its {views} views.",
         "key": {"@id": "samples/key"}, "field": sample_fields},
        {"@type": "cr:RecordSet", "@id": "labels", "name": "labels", "description": "The class of each sample.",
         "field": label_fields},
        {"@type": "cr:RecordSet", "@id": "rotations", "name": "rotations",
         "description": "The object rotation of each view of each sample.", "field": rotation_fields},
        {"@type": "cr:RecordSet", "@id": "views", "name": "views", "description": "One record per view image.",
         "field": view_fields},
    ]
    totals = manifest.totals()
    metadata: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": manifest.name,
        "description": description or (
            f"{totals['objects']} objects of {len(manifest.classes)} classes, each rendered under {views} known "
            f"transformations ({', '.join(f.name for f in manifest.factors)}), as WebDataset tar shards."
        ),
        "license": license,
        "url": url or str(facts.root),
        "version": _semver(manifest.version),
        "datePublished": manifest.created[:10] if manifest.created else None,
        "keywords": ["orbitset", "equivariance", "3D objects", "multi-view", "webdataset"],
        "creator": {"@type": "sc:Organization", "name": "orbitset"},
        "isLiveDataset": False,
        "distribution": distribution,
        "recordSet": record_sets,
        **_rai(facts),
    }
    if facts.derives_from_3diebench:
        metadata["citeAs"] = CITATION_3DIEBENCH
    return {key: value for key, value in metadata.items() if value is not None}


def _semver(version: str) -> str:
    parts = (version.split(".") + ["0", "0"])[:3]
    return ".".join(part if part.isdigit() else "0" for part in parts)


def write_croissant(facts: DatasetFacts, out: str | os.PathLike | None = None, **options: Any) -> Path:
    """Write `croissant_metadata` as ``croissant.json`` beside the manifest (or to `out`); returns the path."""
    path = Path(out) if out is not None else facts.root / CROISSANT_NAME
    write_json_atomic(path, croissant_metadata(facts, **options))
    return path
