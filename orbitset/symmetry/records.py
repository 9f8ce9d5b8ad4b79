"""Symmetry records of a dataset's objects: made at render time, or added afterwards by `annotate`, kept in the
``symmetry.json`` sidecar beside the manifest (written atomically), and read back by the loaders and evaluations.

A record is `Symmetry.to_json()` (group, order, BOP's `symmetries_discrete` / `symmetries_continuous`, tolerance,
appearance, note) or ``{"group": None, "failure": reason}`` for a mesh the detector cannot use. The sidecar:
``{"format": "orbitset-symmetry", "format_version": 1, "groups": {name: count}, "objects": {key: record}, ...}``.
Shards are never rewritten: meta.json holds the record of rendered objects, the sidecar every object's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from orbitset.errors import AssetError, ManifestError, OrbitsetError
from orbitset.progress import object_progress

SIDECAR_NAME = "symmetry.json"
SIDECAR_FORMAT = "orbitset-symmetry"
SIDECAR_VERSION = 1


def record_of(mesh, appearance: str, what: str, textures_missing: Iterable[str] = ()) -> dict[str, Any]:
    """The symmetry record of a mesh in its canonical frame; a failure record (never an exception) for a mesh the
    detector cannot use (no faces, NaN, zero extent, numerical failure on a degenerate surface), so that a render
    never loses an object to its symmetry. Missing textures are named in the note (the colours compared are those rendered)."""
    from orbitset.symmetry.detect import detect_symmetry

    try:
        record = detect_symmetry(mesh, appearance=appearance, what=what).to_json()
    except AssetError as exc:
        return {"group": None, "order": None, "failure": str(exc)}
    except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:  # numerics on a degenerate surface (qhull, lstsq)
        return {"group": None, "order": None, "failure": f"{what}: detection failed ({type(exc).__name__}: {exc})"}
    missing = sorted(textures_missing)
    if missing and appearance == "source":
        note = f"textures missing ({', '.join(missing)}): colours compared as rendered, without them"
        record["note"] = f"{record['note']}; {note}" if record.get("note") else note
    return record


def cache_dir() -> Path:
    """Folder of cached records: ``$ORBITSET_SYMMETRY_CACHE`` or ``~/.cache/orbitset/symmetry``."""
    root = os.environ.get("ORBITSET_SYMMETRY_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "orbitset" / "symmetry"


@functools.cache
def _detector_digest() -> "hashlib._Hash":
    """sha256 of the detector's source, read once per process (each record's digest starts from a copy)."""
    from orbitset.symmetry import detect

    return hashlib.sha256(Path(detect.__file__).read_bytes())


def _content_digest(mesh, appearance: str, textures_missing: Iterable[str]) -> str:
    """sha256 of everything a record depends on: the detector's source, the mesh's vertices and faces, with
    appearance "source" its colours (UVs and texture pixels, material, vertex or face colours), and the arguments."""
    digest = _detector_digest().copy()
    digest.update(json.dumps([appearance, sorted(textures_missing)]).encode())
    for array in (mesh.vertices, mesh.faces):
        digest.update(np.ascontiguousarray(array).tobytes())
    if appearance == "source":
        visual = getattr(mesh, "visual", None)
        for name in ("uv", "vertex_colors", "face_colors"):
            value = getattr(visual, name, None) if getattr(visual, "kind", None) else None
            if value is not None:
                digest.update(name.encode() + np.ascontiguousarray(value).tobytes())
        material = getattr(visual, "material", None)
        image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
        if material is not None:
            digest.update(np.asarray(getattr(material, "main_color", [])).tobytes())
        if image is not None and hasattr(image, "tobytes"):
            digest.update(f"{image.mode}{image.size}".encode() + image.tobytes())
    return digest.hexdigest()


def record_of_asset(asset, what: str) -> dict[str, Any]:
    """The symmetry record of a `LoadedAsset` (its canonical mesh and the appearance it was loaded with), cached on
    disk by content (`cache_dir`; an unwritable cache is skipped), so re-rendering an object does not detect again."""
    missing = asset.info.get("textures_missing", ())
    path = cache_dir() / f"{_content_digest(asset.mesh, asset.appearance, missing)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    record = record_of(asset.mesh, asset.appearance, what, missing)
    try:
        from orbitset.manifests.model import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, record)
    except OSError:
        pass
    return record


def group_counts(records: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Objects per group name (``"failed"`` for failure records), sorted by name."""
    counts = Counter(record.get("group") or "failed" for record in records.values())
    return dict(sorted(counts.items()))


def write_sidecar(folder: str | os.PathLike, records: Mapping[str, Mapping[str, Any]], **about: Any) -> Path:
    """Write ``folder/symmetry.json`` atomically; `about` (assets, appearance, ...) is stored beside the records."""
    from orbitset.manifests.model import write_json_atomic

    path = Path(folder) / SIDECAR_NAME
    write_json_atomic(path, {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, **about,
                             "groups": group_counts(records), "objects": dict(sorted(records.items()))})
    return path


def read_sidecar(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar beside a dataset's manifest (folder or manifest path), or None when there is none."""
    from orbitset.manifests.model import manifest_path

    path = manifest_path(folder).parent / SIDECAR_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable symmetry sidecar ({exc}); recreate it with "
                            "'orbitset symmetry --annotate DATASET --assets SOURCE'") from exc
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or not isinstance(data.get("objects"), dict):
        raise ManifestError(f"{path}: not an orbitset symmetry sidecar; recreate it with "
                            "'orbitset symmetry --annotate DATASET --assets SOURCE'")
    return data


def object_records(dataset: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every object's record by sample key; ManifestError saying how to make them when the dataset has none."""
    data = read_sidecar(dataset)
    if data is None:
        raise ManifestError(f"{dataset} has no {SIDECAR_NAME}: render it with this orbitset, or add the records with "
                            "'orbitset symmetry --annotate DATASET --assets SOURCE'")
    return data["objects"]


def records_for_loader(source: Any, shard_locations: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Object key -> symmetry record for a loader reading `source` (a local dataset folder or manifest, or local
    shards): the sidecar beside the manifest, else the records in the shards' meta.json. UsageError for remote
    sources and for datasets that record no symmetry."""
    from orbitset.errors import UsageError

    locations = list(shard_locations)
    if any("://" in str(location) for location in locations):
        raise UsageError("symmetry=True reads symmetry.json beside a local dataset; download the dataset first")
    if isinstance(source, (str, os.PathLike)) and not str(source).endswith(".tar"):
        sidecar = read_sidecar(source)
        if sidecar is not None:
            return sidecar["objects"]
    records = collect_from_shards(Path(location) for location in locations)
    if not records:
        raise UsageError(f"{source}: no symmetry recorded (no {SIDECAR_NAME}, no meta.json 'symmetry'); add it with "
                         "'orbitset symmetry --annotate DATASET --assets SOURCE'")
    return records


def symmetry_counts(dataset: str | os.PathLike, manifest=None) -> dict[str, int] | None:
    """Objects per group of a dataset: the sidecar's (it also covers annotated datasets), else the manifest's
    `symmetry_groups`; None when neither records symmetry."""
    sidecar = read_sidecar(dataset)
    if sidecar is not None:
        return dict(sidecar.get("groups") or group_counts(sidecar["objects"]))
    if manifest is None:
        from orbitset.manifests.model import load_manifest

        manifest = load_manifest(dataset)
    return manifest.symmetry_groups


def counts_text(counts: Mapping[str, int] | None) -> str:
    """One line: ``C1 10, C4 2, Dinf 3`` (or that nothing is recorded and how to add it)."""
    if not counts:
        return "not recorded (add it with 'orbitset symmetry --annotate DATASET --assets SOURCE')"
    return ", ".join(f"{group} {count}" for group, count in counts.items())


def equivalents(record: Mapping[str, Any] | None, max_step_deg: float = 1.0) -> np.ndarray:
    """(M, 3, 3) rotations equivalent to the identity for an object (identity first): its discrete symmetries,
    composed with the continuous axis sampled every `max_step_deg` degrees or finer (``ceil(360 / max_step_deg)``
    turns; bop_toolkit samples a turn likewise, at ``ceil(pi / step)`` points). SO3 and failure/missing records: the
    identity only (the caller handles SO3: every rotation is equivalent)."""
    identity = np.eye(3)[None]
    if not record or not record.get("group") or record["group"] == "SO3":
        return identity
    discrete = [identity[0]] + [np.asarray(m, dtype=np.float64).reshape(4, 4)[:3, :3]
                                for m in record.get("symmetries_discrete", [])]
    from orbitset.symmetry.detect import rotation_about

    turns = [identity[0]]
    continuous = record.get("symmetries_continuous") or []
    if continuous:  # Cinf and Dinf have one continuous axis
        steps = int(np.ceil(360.0 / max_step_deg))
        unit = np.asarray(continuous[0]["axis"], dtype=np.float64)
        turns = [rotation_about(unit / np.linalg.norm(unit), 2 * np.pi * k / steps) for k in range(steps)]
    return np.stack([t @ d for t in turns for d in discrete])


def _metas(shards: Iterable[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(sample key, meta.json) of every sample of `shards`, in order (reads the meta.json members only)."""
    from orbitset.shards import ShardReader

    out = []
    for shard in shards:
        with ShardReader(shard) as reader:
            for key in reader.keys():
                out.append((key, json.loads(reader.read_field(key, "meta.json"))))
    return out


def dataset_keys(dataset: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """(sample key, meta.json) of every object of a dataset, in shard order."""
    from orbitset.manifests.model import load_manifest, manifest_path

    file = manifest_path(dataset)
    return _metas(file.parent / entry.name for entry in load_manifest(file).shards)


def collect_from_shards(shards: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """The `symmetry` records in the meta.json of `shards`' samples, by sample key (samples without one skipped)."""
    return {key: meta["symmetry"] for key, meta in _metas(shards) if isinstance(meta.get("symmetry"), dict)}


def annotate(dataset: str | os.PathLike, assets: str, appearance: str = "source", up_axis: str | None = None,
             progress: bool = True) -> tuple[Path, dict[str, int]]:
    """Detect every object of a dataset (rendered or converted) from its mesh in `assets` (an ``--assets`` spec) and
    write the sidecar; objects are matched by meta.json ``source_id``, else by sample key. Returns (sidecar path,
    group counts). Objects whose mesh is missing get failure records; OrbitsetError when none matched."""
    from orbitset.datasets.mesh_sources import open_source
    from orbitset.manifests.model import manifest_path

    source = open_source(assets)
    refs = source.objects()
    by_source_id = {ref.source_id: ref for ref in refs}
    by_key = {ref.key: ref for ref in refs}
    objects = dataset_keys(dataset)
    records: dict[str, dict[str, Any]] = {}
    matched = 0
    with object_progress(len(objects), "symmetry", progress) as bar:
        for key, meta in objects:
            ref = by_source_id.get(str(meta.get("source_id"))) or by_key.get(key)
            if ref is None:
                records[key] = {"group": None, "order": None,
                                "failure": f"no mesh for {meta.get('source_id') or key} in {assets}"}
            else:
                matched += 1
                try:
                    asset = source.load(ref, appearance=appearance, up_axis=up_axis)
                    records[key] = record_of_asset(asset, ref.source_id)
                except OrbitsetError as exc:
                    records[key] = {"group": None, "order": None, "failure": str(exc)}
            bar.update(1)
            bar.set_postfix(group=records[key].get("group") or "failed")
    if not matched:
        raise AssetError(f"none of the {len(objects)} objects of {dataset} has a mesh in {assets}; check --assets "
                         "(the source the dataset was rendered or converted from)")
    path = write_sidecar(manifest_path(dataset).parent, records, assets=assets, appearance=appearance)
    return path, group_counts(records)
