"""Dataset statistics: objects per class and split, factor histograms, and the histogram of pair relative angles.

Only ``meta.json``, ``latents.npy`` and ``rotations.npy`` of each sample are read (by seeking, through
`orbitset.shards.ShardReader`); images are never decoded. The relative angle of a pair of views (a, b) is the angle of
R_a^T R_b (`orbitset.geometry.geodesic_angle`), over every pair of distinct views of each object.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orbitset import geometry
from orbitset.errors import ManifestError
from orbitset.manifests.model import Manifest, load_manifest, manifest_path
from orbitset.schema import load_json, load_npy
from orbitset.shards import ShardReader
from orbitset.symmetry.records import counts_text, symmetry_counts

BINS = 20
_BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class Histogram:
    """Counts in equal bins over [low, high]; `unit` names what the edges measure."""

    name: str
    unit: str
    edges: np.ndarray
    counts: np.ndarray
    minimum: float = math.nan
    maximum: float = math.nan
    mean: float = math.nan

    @classmethod
    def of(cls, name: str, unit: str, values: np.ndarray, low: float | None, high: float | None) -> "Histogram":
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return cls(name, unit, np.linspace(0.0, 1.0, BINS + 1), np.zeros(BINS, dtype=np.int64))
        low = float(values.min()) if low is None else low
        high = float(values.max()) if high is None else high
        if high <= low:
            high = low + 1.0
        counts, edges = np.histogram(np.clip(values, low, high), bins=BINS, range=(low, high))
        return cls(name, unit, edges, counts, float(values.min()), float(values.max()), float(values.mean()))

    def line(self) -> str:
        peak = max(int(self.counts.max()), 1)
        bars = "".join(_BLOCKS[math.ceil(c / peak * (len(_BLOCKS) - 1))] for c in self.counts)
        return (
            f"{self.name:<16} [{self.edges[0]:8.3f}, {self.edges[-1]:8.3f}] {self.unit:<4} |{bars}| "
            f"min {self.minimum:.3f} mean {self.mean:.3f} max {self.maximum:.3f}"
        )


@dataclass
class DatasetStats:
    manifest: Manifest
    counts: Counter = field(default_factory=Counter)  # (split, class name) -> objects
    views: int = 0
    factors: list[Histogram] = field(default_factory=list)
    relative_angle: Histogram | None = None
    symmetry: dict[str, int] | None = None  # objects per rotation group (orbitset.symmetry), None: not recorded

    def text(self) -> str:
        """Counts per class and split, then one histogram line per factor and one for pair relative angles."""
        splits = sorted({split for split, _ in self.counts})
        classes = self.manifest.classes or sorted({name for _, name in self.counts})
        width = max([len("class")] + [len(c) for c in classes])
        lines = [f"dataset {self.manifest.name!r}: {sum(self.counts.values())} objects, {self.views} views", ""]
        lines.append("class".ljust(width) + "".join(f"{s:>10}" for s in splits) + f"{'total':>10}")
        for name in classes:
            row = [self.counts[(s, name)] for s in splits]
            lines.append(name.ljust(width) + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")
        totals = [sum(n for (s, _), n in self.counts.items() if s == split) for split in splits]
        lines.append("total".ljust(width) + "".join(f"{n:>10}" for n in totals) + f"{sum(totals):>10}")
        lines += ["", f"symmetry groups (objects): {counts_text(self.symmetry)}"]
        lines += ["", "factor histograms (per view):"] + [h.line() for h in self.factors]
        if self.relative_angle is not None:
            lines += ["", "relative rotation angle of view pairs (all pairs of each object):", self.relative_angle.line()]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> Path:
        """Write a PNG figure: counts per class and split, factor histograms, relative-angle histogram."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = 1 + len(self.factors) + (self.relative_angle is not None)
        columns = min(4, panels)
        rows = math.ceil(panels / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
        flat = list(axes.flat)
        splits = sorted({split for split, _ in self.counts})
        classes = self.manifest.classes or sorted({name for _, name in self.counts})
        bottom = np.zeros(len(classes))
        for split in splits:
            values = np.array([self.counts[(split, c)] for c in classes], dtype=float)
            flat[0].bar(range(len(classes)), values, bottom=bottom, label=split)
            bottom += values
        flat[0].set_title("objects per class")
        flat[0].set_xticks(range(len(classes)), classes, rotation=90, fontsize=6)
        flat[0].legend(fontsize=7)
        histograms = self.factors + ([self.relative_angle] if self.relative_angle is not None else [])
        for axis, histogram in zip(flat[1:], histograms):
            axis.stairs(histogram.counts, histogram.edges, fill=True)
            axis.set_title(f"{histogram.name} ({histogram.unit})", fontsize=9)
        for axis in flat[panels:]:
            axis.axis("off")
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path


def _pair_angles(rotations: np.ndarray) -> np.ndarray:
    first, second = np.triu_indices(len(rotations), k=1)
    if first.size == 0:
        return np.empty(0)
    return np.asarray(geometry.geodesic_angle(rotations[first], rotations[second]))


def check_not_empty(manifest: Manifest, path: str | os.PathLike, split: str | None = None) -> None:
    """ManifestError in one line when `manifest` lists no object (in `split`), saying how many failed to render."""
    if any(entry.objects for entry in manifest.shards_for(split)):
        return
    where = f" in split {split!r}" if split else ""
    failed = f"; {len(manifest.failures)} objects failed to render (see its manifest's failures)" if manifest.failures else ""
    raise ManifestError(f"{path}: the dataset holds no objects{where}{failed}")


def dataset_stats(path: str | os.PathLike, split: str | None = None) -> DatasetStats:
    """Statistics of the dataset at `path` (folder or manifest), over `split` or all splits."""
    file = manifest_path(path)
    manifest = load_manifest(file)
    check_not_empty(manifest, path, split)
    stats = DatasetStats(manifest=manifest, symmetry=symmetry_counts(file, manifest))
    latents: list[np.ndarray] = []
    angles: list[np.ndarray] = []
    for entry in manifest.shards_for(split):
        with ShardReader(file.parent / entry.name) as reader:
            for key in reader.keys():
                fields = reader.read(key, ["meta.json", "latents.npy", "rotations.npy"])
                meta = load_json(fields["meta.json"], f"{entry.name} sample {key!r} meta.json")
                stats.counts[(entry.split, str(meta["class_name"]))] += 1
                sample_latents = load_npy(fields["latents.npy"], f"{entry.name} sample {key!r} latents.npy")
                stats.views += len(sample_latents)
                latents.append(sample_latents)
                angles.append(_pair_angles(load_npy(fields["rotations.npy"], f"{entry.name} sample {key!r} rotations.npy")))
    table = np.concatenate(latents) if latents else np.empty((0, len(manifest.factors)))
    names = [(f.name, f.unit, f.low, f.high) for f in manifest.factors] or [
        (f"factor{i}", "", None, None) for i in range(table.shape[1])
    ]
    stats.factors = [Histogram.of(n, u, table[:, i], lo, hi) for i, (n, u, lo, hi) in enumerate(names) if i < table.shape[1]]
    stats.relative_angle = Histogram.of("relative angle", "rad", np.concatenate(angles) if angles else np.empty(0), 0.0, math.pi)
    return stats
