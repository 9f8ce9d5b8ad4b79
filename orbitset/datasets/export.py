"""Export an orbitset dataset to 3DIEBench's published layout (``SYNSET/OBJ/image_i.jpg`` + ``latent_i.npy``, split
and label files), for tools that read that layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orbitset.datasets.sie_layout import IMAGES_SUFFIX, LABELS_SUFFIX, LAYOUTS, SAFE_NAME
from orbitset.progress import object_progress
from orbitset.schema import ObjectSample


@dataclass
class ExportReport:
    out: Path
    objects: int
    images: int
    splits: dict[str, int]

    def summary(self) -> str:
        per_split = ", ".join(f"{split} {count}" for split, count in sorted(self.splits.items()))
        return f"exported {self.objects} objects ({self.images} images) to {self.out} ({per_split}); split files in {self.out}"


def _sie_folders(sample: ObjectSample) -> tuple[str, str]:
    """(synset folder, object folder): the original ids for converted 3DIEBench data, else class name and object
    part of the key. Names come from untrusted shards, so anything that is not a plain name falls back to the key."""
    class_part, object_part = sample.key.split("__", 1)
    source_id = sample.meta.get("source_id")
    if sample.meta.get("source") in LAYOUTS and isinstance(source_id, str) and source_id.count("/") == 1:
        synset, object_id = source_id.split("/")
        if SAFE_NAME.match(synset) and SAFE_NAME.match(object_id):
            return synset, object_id
    name = str(sample.meta.get("class_name", ""))
    return (name if SAFE_NAME.match(name) else class_part), object_part


def export_sie_layout(dataset: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> ExportReport:
    """Write the dataset as ``out/SYNSET/OBJ/image_{i}.<fmt>`` + ``latent_{i}.npy`` (float64, (F,)) and, per split,
    ``out/<split>_images.npy`` (entries ``/SYNSET/OBJ/``) and ``out/<split>_labels.npy`` (int64 class indices).

    The dataset is verified (size + sha256) first; images are written byte for byte as stored. Shards are read one
    sample at a time: memory holds one sample and the split files' entries (one short string per object).
    """
    from orbitset.manifests.model import manifest_path
    from orbitset.manifests.verify import decoded_samples, verify_dataset

    report_check = verify_dataset(dataset)
    report_check.raise_for_problems()
    manifest = report_check.manifest
    root = manifest_path(dataset).parent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    images = objects = 0
    with object_progress(manifest.totals()["objects"], "export sie-layout", progress) as bar:
        for shard in manifest.shards:
            for sample in decoded_samples(root / shard.name):
                synset, object_id = _sie_folders(sample)
                folder = out / synset / object_id
                folder.mkdir(parents=True, exist_ok=True)
                for i, image in enumerate(sample.images):
                    (folder / f"image_{i}.{sample.image_format}").write_bytes(image)
                    np.save(folder / f"latent_{i}.npy", sample.latents[i].astype(np.float64), allow_pickle=False)
                entries.setdefault(shard.split, []).append(f"/{synset}/{object_id}/")
                labels.setdefault(shard.split, []).append(sample.label)
                images += sample.num_views
                objects += 1
                bar.update(1)
    for split in entries:
        np.save(out / f"{split}{IMAGES_SUFFIX}", np.array(entries[split], dtype=str), allow_pickle=False)
        np.save(out / f"{split}{LABELS_SUFFIX}", np.array(labels[split], dtype=np.int64), allow_pickle=False)
    return ExportReport(out, objects, images, {split: len(v) for split, v in entries.items()})
