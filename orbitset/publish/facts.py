"""What a dataset card and Croissant metadata state about a dataset: read once from its manifest and shards.

Counts come from the shards themselves (each read once, front to back); the member layout (view count, image format,
optional layers) from the first sample, which every other sample must match so that generic readers (Hugging Face
`datasets`, `webdataset`) see one set of fields.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from orbitset.errors import ShardError
from orbitset.manifests.model import Manifest, load_manifest, manifest_path
from orbitset.progress import object_progress
from orbitset.shard_scan import ScannedSample, scan_shard

#: Licence of the original 3DIEBench images (SIE repository, data/README.md).
LICENSE_3DIEBENCH = "cc-by-nc-4.0"
CITATION_3DIEBENCH = """@inproceedings{garrido2023sie,
  title     = {Self-supervised learning of Split Invariant Equivariant representations},
  author    = {Garrido, Quentin and Najman, Laurent and LeCun, Yann},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2023}
}"""
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.tar$")


@dataclass
class DatasetFacts:
    """A dataset as its card describes it. `fields` are the member fields of every sample, sorted."""

    root: Path
    manifest: Manifest
    fields: list[str]
    views: int
    image_format: str
    counts: Counter = field(default_factory=Counter)  # (split, class name) -> objects

    @property
    def objects(self) -> int:
        return sum(self.counts.values())

    @property
    def splits(self) -> dict[str, list[str]]:
        return self.manifest.splits

    @property
    def derives_from_3diebench(self) -> bool:
        """True when the recipe (or the converted original) is 3DIEBench or one of its variants."""
        recipe = self.manifest.recipe
        return str(recipe.get("name") or recipe.get("converter") or self.manifest.name).lower().startswith("3diebench")

    @property
    def converted_original(self) -> bool:
        """True for a conversion of published images (not rendered by orbitset)."""
        return "converter" in self.manifest.recipe

    def layers(self) -> list[str]:
        """Optional per-sample members present: "depth", "mask", "points", "translations"."""
        present = []
        for layer, member in (("depth", "000.depth.png"), ("mask", "000.mask.png"), ("points", "points.npy"),
                              ("translations", "translations.npy")):
            if member in self.fields:
                present.append(layer)
        return present


def read_facts(dataset: str | os.PathLike, progress: bool = False) -> DatasetFacts:
    """Read `dataset` (folder or manifest path): class counts per split and the member fields of its samples.

    Each shard is read once, front to back, keeping only each sample's field names and ``cls``; memory does not grow
    with the dataset; `progress` shows objects read, objects/s and ETA on stderr. Raises ShardError naming the shard
    and key when a sample's fields differ from the first sample's (generic webdataset readers need one set of fields
    per dataset)."""
    file = manifest_path(dataset)
    manifest = load_manifest(file)
    root = file.parent
    counts: Counter = Counter()
    fields: list[str] | None = None
    with object_progress(manifest.totals()["objects"], "card", progress) as bar:
        for entry in manifest.shards:
            for sample in scan_shard(root / entry.name, ("cls",)):
                names = sorted(sample.fields)
                if fields is None:
                    fields = names
                elif names != fields:
                    difference = sorted(set(names) ^ set(fields))
                    raise ShardError(
                        f"shard {entry.name} sample {sample.key!r} has fields that differ from the first sample's "
                        f"({difference}); every sample of a dataset needs the same fields for Hugging Face datasets "
                        "and webdataset readers: re-render it with the same recipe"
                    )
                counts[(entry.split, _class_name(manifest, entry.name, sample))] += 1
                bar.update(1)
    if fields is None:
        raise ShardError(f"dataset {root} has no samples; render or download it first")
    views = [name for name in fields if name[:3].isdigit() and name.count(".") == 1]
    image_format = views[0].split(".")[1] if views else "jpg"
    return DatasetFacts(root=root, manifest=manifest, fields=fields, views=len(views), image_format=image_format,
                        counts=counts)


def _class_name(manifest: Manifest, shard: str, sample: ScannedSample) -> str:
    """The manifest's name of the sample's class (its ``cls`` index as text when the manifest has no such class)."""
    try:
        label = int(sample.data["cls"].decode("ascii"))
    except (KeyError, UnicodeDecodeError, ValueError):
        raise ShardError(f"shard {shard} sample {sample.key!r} has no readable cls (class index as decimal text); "
                         "re-render or re-download it") from None
    return manifest.classes[label] if 0 <= label < len(manifest.classes) else str(label)


def brace_pattern(names: list[str]) -> str | None:
    """``train-{000000..000011}.tar`` for consecutively numbered shard names with one prefix and digit width;
    None otherwise (the names then have to be listed)."""
    matches = [_NUMBERED.match(name) for name in names]
    if not matches or any(m is None for m in matches):
        return None
    prefixes = {m["prefix"] for m in matches}
    widths = {len(m["number"]) for m in matches}
    numbers = [int(m["number"]) for m in matches]
    if len(prefixes) != 1 or len(widths) != 1 or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return None
    width, prefix = widths.pop(), prefixes.pop()
    if len(numbers) == 1:
        return names[0]
    return f"{prefix}{{{numbers[0]:0{width}d}..{numbers[-1]:0{width}d}}}.tar"
