"""Render a whole dataset: select objects, split them, assign them to shards, run the jobs, write shards + manifest.

Determinism and resumption:

- Objects are taken round-robin over the source's classes (the first `objects` of that order), so a small run still
  covers every class. Splits are decided per object: from a split file, else from the source's own layout
  (ModelNet train/test, 3DIEBench split files), else ``stable_hash(seed/key) < val_fraction`` -> ``val``.
- Within a split, objects keep that order and fill shards of `objects_per_shard`: ``<split>-000000.tar``, ... The
  plan depends only on the command, never on workers, executor or timing, so a rerun plans the same shards.
- Shards, sidecars and the manifest are written by `orbitset.shards.ShardWriter`, whose identity here is the recipe
  hash and seed: a shard is complete when its sidecar ``<split>-NNNNNN.json`` matches and its tar has the recorded
  size. A rerun keeps complete shards, removes stale ``.*.partial`` files (kill -9 leftovers), and renders the rest.
- The manifest is written last, from the sidecars: shards, splits, failures (object + reason), recipe and hash,
  factors, classes, software versions and objects per symmetry group; ``symmetry.json`` (every object's rotation
  group, `orbitset.symmetry.records`) is written just before it, from the shards' meta.json.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from orbitset.datasets.sources import AssetRef, AssetSource, check_up_axis
from orbitset.errors import RenderError, ShardError
from orbitset.hashing import stable_hash
from orbitset.manifests.model import Factor, Failure, Manifest, software_versions
from orbitset.progress import object_progress
from orbitset.render.appearance import note_features
from orbitset.render.executors import WorkerLimits, make_executor
from orbitset.render.job import MAX_FACES, JobSpec, ObjectResult, ObjectTask
from orbitset.render.recipes import Recipe, get_recipe
from orbitset.render.recorded import match_recorded, read_recorded_factors
from orbitset.shards import SPLIT_ORDER, ShardRecord, ShardWriter, shard_name
OBJECTS_PER_SHARD = 64


@dataclass
class PlannedShard:
    """One shard of the plan: its file name, split and objects (in sample order)."""

    name: str
    split: str
    refs: list[AssetRef]

    @property
    def keys(self) -> list[str]:
        return [ref.key for ref in self.refs]


def open_assets(assets: "AssetSource | str", categories: str | Path | None = None) -> AssetSource:
    """An AssetSource, or the source an ``--assets`` spec names (`categories`: see `open_source`)."""
    if isinstance(assets, AssetSource):
        return assets
    from orbitset.datasets.mesh_sources import open_source

    return open_source(str(assets), categories=categories)


def select_objects(refs: Sequence[AssetRef], count: int | None) -> list[AssetRef]:
    """The first `count` objects (all when None) of the round-robin order over classes."""
    by_class: dict[str, list[AssetRef]] = {}
    for ref in refs:
        by_class.setdefault(ref.class_name, []).append(ref)
    ordered = [group[i] for i in range(max(map(len, by_class.values()), default=0)) for group in by_class.values() if i < len(group)]
    return ordered if count is None else ordered[:count]


def read_split_file(path: str | Path) -> dict[str, str]:
    """A JSON split file ``{"train": [...], "val": [...]}`` of object keys or source ids -> {name: split}."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RenderError(f"split file {path}: cannot read it as JSON ({exc}); expected {{\"train\": [keys], \"val\": [keys]}}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise RenderError(f"split file {path}: expected a JSON object of split name -> list of object keys or source ids")
    return {str(name): str(split) for split, names in data.items() for name in names}


def assign_splits(refs: Sequence[AssetRef], source: AssetSource, seed: int, val_fraction: float,
                  split_file: str | Path | None = None, recorded: dict[str, str] | None = None) -> dict[str, str]:
    """key -> split for every object in `refs` (objects a split file leaves out are dropped)."""
    listed = read_split_file(split_file) if split_file is not None else None
    out: dict[str, str] = {}
    drawn: list[AssetRef] = []
    for ref in refs:
        if listed is not None:
            split = listed.get(ref.key, listed.get(ref.source_id))
            if split is None:
                continue
        elif recorded and ref.key in recorded:
            split = recorded[ref.key]
        elif getattr(source, "split_of", None) is not None and source.split_of(ref) is not None:
            split = source.split_of(ref)
        else:
            split = "val" if _split_draw(seed, ref) < val_fraction else "train"
            drawn.append(ref)
        out[ref.key] = split
    _keep_one_train_object_per_class(drawn, out, seed)
    return out


def _split_draw(seed: int, ref: AssetRef) -> float:
    """The uniform [0, 1) number that decides `ref`'s random split."""
    return stable_hash(f"{seed}/split/{ref.key}") / 2**64


def _keep_one_train_object_per_class(drawn: Sequence[AssetRef], splits: dict[str, str], seed: int) -> None:
    """Move to train, in every class of two or more randomly split objects that all drew val, the one that drew the
    largest number (so that every class can be learnt)."""
    by_class: dict[str, list[AssetRef]] = {}
    for ref in drawn:
        by_class.setdefault(ref.class_name, []).append(ref)
    for members in by_class.values():
        if len(members) >= 2 and all(splits[ref.key] == "val" for ref in members):
            splits[max(members, key=lambda ref: _split_draw(seed, ref)).key] = "train"


def plan_shards(refs: Sequence[AssetRef], splits: dict[str, str], objects_per_shard: int) -> list[PlannedShard]:
    """Shards per split in order (``train`` first, then ``val``, then others by name)."""
    if objects_per_shard < 1:
        raise RenderError(f"objects_per_shard must be at least 1, got {objects_per_shard}")
    names = sorted(set(splits.values()), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    shards = []
    for split in names:
        members = [ref for ref in refs if splits.get(ref.key) == split]
        for start in range(0, len(members), objects_per_shard):
            shards.append(PlannedShard(shard_name(split, start // objects_per_shard), split, members[start : start + objects_per_shard]))
    return shards


def _finish_shard(writer: ShardWriter, shard: PlannedShard, results: dict[str, ObjectResult]) -> ShardRecord:
    samples = [results[key].fields for key in shard.keys if results[key].fields is not None]
    failures = [Failure(key, results[key].reason) for key in shard.keys if results[key].fields is None]
    warnings = {}
    for key in shard.keys:
        notes = {"appearance_notes": results[key].appearance_notes} if results[key].appearance_notes else {}
        if results[key].framing or notes:
            warnings[key] = {**results[key].framing, **notes}
    return writer.write_shard(shard.name, shard.split, shard.keys, samples, failures, warnings)


def check_backend_layers(backend: str, preset: str, layers: Sequence[str]) -> None:
    """RenderError, before any rendering, when `backend` with `preset` cannot render the depth or mask `layers`."""
    from orbitset.render.backends import backend_class

    renders = backend_class(backend).image_layers(preset)
    missing = [layer for layer in layers if layer in ("depth", "mask") and layer not in renders]
    if missing:
        keep = ",".join(layer for layer in layers if layer not in missing) or "none"
        renders_text = ", ".join(("RGB", *renders)) if renders else "RGB only"
        raise RenderError(
            f"the {backend} backend's {preset!r} preset cannot render the {' and '.join(missing)} layer(s) the recipe "
            f"asks for (it renders {renders_text}); pass --layers {keep} to leave them out, or use another preset"
        )


def render_dataset(
    recipe: "Recipe | str",
    assets: "AssetSource | str",
    out: str | Path,
    *,
    backend: str = "raster",
    preset: str = "fast",
    objects: int | None = None,
    views: int | None = None,
    size: int | None = None,
    seed: int = 0,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    factors_from: str | Path | None = None,
    val_fraction: float = 0.2,
    split_file: str | Path | None = None,
    layers: Sequence[str] | None = None,
    progress: bool = True,
    objects_per_shard: int = OBJECTS_PER_SHARD,
    max_faces: int = MAX_FACES,
    limits: WorkerLimits = WorkerLimits(),
    name: str | None = None,
    appearance: str | None = None,
    up_axis: str | None = None,
    categories: str | Path | None = None,
) -> Manifest:
    """Render `assets` with `recipe` into shards + manifest.json under `out` (resuming a previous run there).

    `views`, `size`, `layers` and `appearance` override the recipe's (None keeps them); `objects` limits the object
    count; `up_axis` ("y" or "z") overrides every file's own up axis; `categories` is an objaverse annotation file.
    With `factors_from` (an orbitset dataset or an original 3DIEBench tree) exactly the recorded views are rendered.
    Failed objects are recorded (manifest ``failures``) and skipped. Returns the manifest written last.
    """
    recipe = get_recipe(recipe).with_overrides(
        views=views, size=size, layers=tuple(layers) if layers is not None else None, appearance=appearance
    )
    if not 0.0 <= val_fraction < 1.0:
        raise RenderError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_backend_layers(backend, preset, recipe.layers)
    check_up_axis(up_axis)
    source = open_assets(assets, categories)

    all_refs = source.objects()
    recorded_latents: dict[str, np.ndarray] = {}
    recorded_splits: dict[str, str] = {}
    unmatched: list[Failure] = []
    if factors_from is not None:
        recorded = read_recorded_factors(factors_from, recipe)
        refs, recorded_latents, recorded_splits, unmatched = match_recorded(recorded, all_refs)
        refs = refs[:objects] if objects is not None else refs
        recipe = recipe.with_overrides(views=max((len(v) for v in recorded_latents.values()), default=recipe.views))
    else:
        refs = select_objects(all_refs, objects)
    if not refs:
        raise RenderError(f"no objects to render from {source.name} assets (objects={objects}); check --assets and --objects")
    splits = assign_splits(refs, source, seed, val_fraction, split_file, recorded_splits)
    plan = plan_shards([r for r in refs if r.key in splits], splits, objects_per_shard)
    selected = {ref.class_name for ref in refs if ref.key in splits}
    job = JobSpec(
        source=source, recipe=recipe, seed=seed, classes=tuple(c for c in source.classes() if c in selected),
        backend=backend, preset=preset, max_faces=max_faces, appearance=recipe.appearance, up_axis=up_axis,
    )

    writer = ShardWriter(out, objects_per_shard=objects_per_shard, identity={"recipe_hash": recipe.hash(), "seed": seed})
    try:
        todo = [shard for shard in plan if writer.completed(shard.name, shard.split, shard.keys) is None]
    except ShardError as exc:
        raise RenderError(f"{exc} (render into an empty --out folder)") from exc
    shard_of = {ref.key: shard for shard in todo for ref in shard.refs}
    tasks = [ObjectTask(ref, recorded_latents.get(ref.key)) for shard in todo for ref in shard.refs]
    collected: dict[str, dict[str, ObjectResult]] = {shard.name: {} for shard in todo}
    total = sum(len(s.refs) for s in plan)
    bar = object_progress(total, "render", progress, initial=total - len(tasks))
    images = failures = 0
    start = time.monotonic()
    renderer = None
    try:
        for result in make_executor(executor, workers, address, limits).run(job, tasks):
            shard = shard_of[result.key]
            collected[shard.name][result.key] = result
            images += result.views
            failures += result.fields is None
            if result.fields is not None and renderer is None:
                renderer = json.loads(result.fields["meta.json"])["renderer"]
            bar.update(1)
            bar.set_postfix(images_per_s=f"{images / max(time.monotonic() - start, 1e-9):.2f}", failures=failures)
            if len(collected[shard.name]) == len(shard.refs):
                _finish_shard(writer, shard, collected.pop(shard.name))
    finally:
        bar.close()

    symmetry_groups = _record_symmetry(writer, out, assets if isinstance(assets, str) else source.name, recipe.appearance)
    framing_warnings = {k: {kind: n for kind, n in v.items() if kind != "appearance_notes"}
                        for record in writer.records.values() for k, v in record.warnings.items()}
    notes = {k: v["appearance_notes"] for record in writer.records.values() for k, v in record.warnings.items()
             if "appearance_notes" in v}
    failed_keys = {f.object for f in unmatched} | {f.object for r in writer.records.values() for f in r.failures}
    empty_classes = [c for c in job.classes if all(r.key in failed_keys for s in plan for r in s.refs if r.class_name == c)]
    return writer.write_manifest(
        failures=unmatched,
        name=name or recipe.name,
        classes=list(job.classes),
        factors=[Factor(n, u, lo, hi) for n, u, lo, hi in recipe.factor_ranges()],
        recipe=recipe.to_json(),
        recipe_hash=recipe.hash(),
        seed=seed,
        software=software_versions(renderer=renderer or backend),
        symmetry_groups=symmetry_groups,
        extra={
            "assets": assets if isinstance(assets, str) else source.name,
            "backend": backend,
            "preset": preset,
            "objects_per_shard": objects_per_shard,
            "val_fraction": val_fraction,
            "factors_from": str(factors_from) if factors_from is not None else None,
            "max_faces": max_faces,
            "up_axis": up_axis,
            "unsupported_files": list(getattr(source, "unsupported", [])),
            "source_warnings": list(getattr(source, "warnings", [])),
            "classes_without_objects": empty_classes,
            "framing_warnings": {k: framing for k, framing in framing_warnings.items() if framing},
            "appearance_notes": appearance_counts(notes),
        },
    )


def _record_symmetry(writer: ShardWriter, out: str | Path, assets: str, appearance: str) -> dict[str, int]:
    """Write the symmetry sidecar from the meta.json of every shard kept or written (resumed ones too); returns the
    objects per group for the manifest."""
    from orbitset.symmetry.records import collect_from_shards, group_counts, write_sidecar

    shards = [Path(out) / entry.name for entry in writer.entries()]
    records = collect_from_shards(shards)
    write_sidecar(out, records, assets=assets, appearance=appearance)
    return group_counts(records)


def appearance_counts(notes: dict[str, list[str]]) -> dict[str, Any]:
    """The manifest's count of objects with appearance notes (`orbitset.render.appearance`), in all and per feature."""
    features = Counter(feature for sentences in notes.values() for feature in note_features(sentences))
    return {"objects": len(notes), "features": dict(sorted(features.items()))}
