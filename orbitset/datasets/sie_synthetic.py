"""Synthetic data in 3DIEBench's exact published layout, for tests and benchmarks: a tree of ``SYNSET/OBJECT_ID/``
folders with ``image_{i}.jpg`` and ``latent_{i}.npy`` (float64, shape (F,)), split and label files, and a gzip tar of
the tree as the original archive holds it.

Images are uniform floors of the view's floor hue (HSV(hue, 0.6, 0.6), 3DIEBench's floor), written the way the original generator
wrote them: OpenCV's encoder given an RGB array, so the stored JPEG has red and blue swapped. Hues are quantised to
`hues` levels and one encoded JPEG is reused per level, so thousands of files are written in seconds; `noise` adds a
fixed pseudo-random texture to make JPEGs as large (and as incompressible) as real renders.
"""

from __future__ import annotations

import colorsys
import io
import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orbitset import threediebench

SYNSETS = ("04379243", "02691156", "03001627")


@dataclass(frozen=True)
class SyntheticTree:
    """What `write_sie_tree` wrote: the tree's root, the folder of its split files, and its objects per split."""

    root: Path
    splits_dir: Path
    splits: dict[str, list[tuple[str, str]]]

    @property
    def objects(self) -> int:
        return sum(len(v) for v in self.splits.values())


def floor_jpeg(hue: float, size: int, noise: float = 0.0, swapped: bool = True, quality: int = 90) -> bytes:
    """A `size` px JPEG of the floor colour HSV(hue, 0.6, 0.6), red and blue swapped when `swapped` (as published)."""
    import simplejpeg

    rgb = np.empty((size, size, 3), dtype=np.float64)
    rgb[:] = np.array(colorsys.hsv_to_rgb(hue % 1.0, threediebench.FLOOR_SATURATION, threediebench.FLOOR_VALUE)) * 255
    if noise:
        rgb += np.random.default_rng(int(hue * 1000)).normal(0, noise, rgb.shape)
    pixels = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    stored = np.ascontiguousarray(pixels[..., ::-1] if swapped else pixels)
    return simplejpeg.encode_jpeg(stored, quality=quality, colorspace="RGB")


def _latent_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values.astype(np.float64), allow_pickle=False)
    return buffer.getvalue()


def write_sie_tree(root: str | os.PathLike, splits_dir: str | os.PathLike, objects_per_synset: int = 4, views: int = 3,
                   factors: int = 7, size: int = 8, hues: int = 16, noise: float = 0.0, val_every: int = 3,
                   synsets: tuple[str, ...] = SYNSETS, seed: int = 0) -> SyntheticTree:
    """Write the layout under `root` and ``<split>_images.npy`` / ``<split>_labels.npy`` under `splits_dir`.

    Every `val_every`-th object of a synset goes to ``val``, the rest to ``train``; split files list objects in a
    shuffled order and labels follow the sorted-synset rule. Latents: rotations in [-pi/2, pi/2], floor hue in
    [0, 1) (quantised to the JPEG's level), spot angles and hue; for `factors` = 10 a translation in [-0.5, 0.5]."""
    root, splits_dir = Path(root), Path(splits_dir)
    rng = np.random.default_rng(seed)
    jpegs = [floor_jpeg(level / hues, size, noise) for level in range(hues)]
    classes = sorted(synsets)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for synset in synsets:
        for index in range(objects_per_synset):
            object_id = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16, dtype=np.uint8))
            folder = root / synset / object_id
            folder.mkdir(parents=True)
            for view in range(views):
                level = int(rng.integers(hues))
                latent = np.concatenate([rng.uniform(-math.pi / 2, math.pi / 2, 3), [level / hues],
                                         [rng.uniform(0, math.pi / 4), rng.uniform(0, 2 * math.pi), rng.uniform(0, 1)],
                                         rng.uniform(-0.5, 0.5, factors - 7)])
                (folder / f"image_{view}.jpg").write_bytes(jpegs[level])
                (folder / f"latent_{view}.npy").write_bytes(_latent_bytes(latent))
            splits["val" if index % val_every == val_every - 1 else "train"].append((synset, object_id))
    splits_dir.mkdir(parents=True, exist_ok=True)
    for split, listed in splits.items():
        order = rng.permutation(len(listed))
        entries = [listed[i] for i in order]
        np.save(splits_dir / f"{split}_images.npy", np.array([f"/{s}/{o}/" for s, o in entries]), allow_pickle=False)
        np.save(splits_dir / f"{split}_labels.npy", np.array([classes.index(s) for s, _ in entries], dtype=np.int64),
                allow_pickle=False)
    return SyntheticTree(root, splits_dir, splits)


def write_sie_archive(tree: str | os.PathLike, archive: str | os.PathLike, top: str = "3DIEBench",
                      compresslevel: int = 6) -> Path:
    """A gzip tar of `tree` as the published archive holds it: every folder and file under ``top/``, in sorted order."""
    tree, archive = Path(tree), Path(archive)
    with tarfile.open(archive, "w:gz", compresslevel=compresslevel, format=tarfile.GNU_FORMAT) as tar:
        tar.add(tree, arcname=top, recursive=False)
        for folder, names, files in os.walk(tree):
            names.sort()
            for name in sorted(names) + sorted(files):
                path = Path(folder) / name
                tar.add(path, arcname=f"{top}/{path.relative_to(tree).as_posix()}", recursive=False)
    return archive
