"""Views recorded elsewhere, to re-render exactly (``--factors-from``): an orbitset dataset or an original 3DIEBench tree.

- orbitset dataset: a folder with ``manifest.json``; every sample's ``latents.npy`` (its ``meta.json`` factor names
  must equal the recipe's), its split from the manifest, matched to the asset source by sample key or source id.
- 3DIEBench tree: ``SYNSET/OBJECT/latent_{i}.npy`` (float64, shape (7,), i = 0..V-1, 3DIEBench's factor order),
  matched by source id ``SYNSET/OBJECT`` (the ShapeNet source's) or key ``SYNSET__OBJECT``; splits from
  ``train_images.npy`` / ``val_images.npy`` at the root when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from orbitset.datasets.sources import AssetRef, key_part
from orbitset.errors import RenderError
from orbitset.manifests.model import Failure
from orbitset.render.recipes import Recipe
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH


@dataclass(frozen=True)
class RecordedObject:
    """The recorded views of one object: (V, F) latents, how to find its mesh, and its split if known."""

    key: str
    source_id: str
    latents: np.ndarray
    split: str | None = None


def _read_orbitset(root: Path, recipe: Recipe) -> list[RecordedObject]:
    from orbitset.manifests.model import load_manifest
    from orbitset.schema import load_json, load_npy
    from orbitset.shards import ShardReader

    manifest = load_manifest(root)
    out = []
    for entry in manifest.shards:
        with ShardReader(root / entry.name) as reader:
            for key in reader.keys():
                fields = reader.read(key, ["latents.npy", "meta.json"])
                meta = load_json(fields["meta.json"], f"{entry.name} {key} meta.json")
                if meta.get("factor_names") != recipe.factor_names:
                    raise RenderError(
                        f"--factors-from {root}: sample {key} has factors {meta.get('factor_names')}, recipe {recipe.name!r} has "
                        f"{recipe.factor_names}; pass the recipe the dataset was made with (manifest recipe {manifest.recipe.get('name')!r})"
                    )
                latents = load_npy(fields["latents.npy"], f"{entry.name} {key} latents.npy")
                out.append(RecordedObject(key, str(meta.get("source_id", "")), latents.astype(np.float64), entry.split))
    return out


def _read_3diebench_splits(root: Path) -> dict[str, str]:
    splits = {}
    for split in ("train", "val"):
        path = root / f"{split}_images.npy"
        if path.is_file():
            try:
                entries = np.load(path, allow_pickle=False)
            except ValueError as exc:
                raise RenderError(f"{path}: cannot read without unpickling ({exc}); save it as a string array first") from exc
            for entry in entries.tolist():
                text = entry.decode() if isinstance(entry, bytes) else str(entry)
                splits["/".join(p for p in text.split("/") if p)] = split
    return splits


def _read_3diebench(root: Path, recipe: Recipe) -> list[RecordedObject]:
    names = [f[0] for f in FACTORS_3DIEBENCH]
    if recipe.factor_names != names:
        raise RenderError(
            f"--factors-from {root}: a 3DIEBench tree records the 7 factors {names}; recipe {recipe.name!r} has "
            f"{recipe.factor_names}; use --recipe 3diebench (or 3diebench-ood)"
        )
    splits = _read_3diebench_splits(root)
    out = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        files = {int(p.stem.split("_", 1)[1]): p for p in folder.glob("latent_*.npy") if p.stem.split("_", 1)[1].isdigit()}
        if not files:
            continue
        if sorted(files) != list(range(len(files))):
            raise RenderError(f"{folder}: latent files {sorted(files)} are not latent_0..latent_{len(files) - 1}; the tree is incomplete")
        rows = []
        for index in range(len(files)):
            try:
                row = np.load(files[index], allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise RenderError(f"{files[index]}: unreadable latent file ({exc})") from exc
            if row.shape != (len(names),) or not np.all(np.isfinite(row)):
                raise RenderError(f"{files[index]}: expected {len(names)} finite values, got shape {row.shape}")
            rows.append(row.astype(np.float64))
        source_id = f"{folder.parent.name}/{folder.name}"
        key = f"{key_part(folder.parent.name)}__{key_part(folder.name)}"
        out.append(RecordedObject(key, source_id, np.stack(rows), splits.get(source_id)))
    if not out:
        raise RenderError(f"--factors-from {root}: found no SYNSET/OBJECT/latent_i.npy files nor a manifest.json")
    return out


def read_recorded_factors(path: str | Path, recipe: Recipe) -> list[RecordedObject]:
    """The recorded objects of an orbitset dataset folder or an original 3DIEBench tree at `path`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise RenderError(f"--factors-from {root}: not a folder; give an orbitset dataset or a 3DIEBench tree")
    if (root / "manifest.json").is_file():
        return _read_orbitset(root, recipe)
    return _read_3diebench(root, recipe)


def match_recorded(recorded: Sequence[RecordedObject], refs: Sequence[AssetRef]):
    """Match recorded objects to the source's refs (by key, then source id).

    Returns (refs in recorded order, key -> latents, key -> split, failures for objects the source lacks).
    """
    by_key = {ref.key: ref for ref in refs}
    by_source = {ref.source_id: ref for ref in refs}
    chosen, latents, splits, missing = [], {}, {}, []
    for item in recorded:
        ref = by_key.get(item.key) or by_source.get(item.source_id)
        if ref is None:
            missing.append(Failure(item.key, f"recorded object (source id {item.source_id!r}) is not in the asset source"))
            continue
        chosen.append(ref)
        latents[ref.key] = item.latents
        if item.split is not None:
            splits[ref.key] = item.split
    return chosen, latents, splits, missing
