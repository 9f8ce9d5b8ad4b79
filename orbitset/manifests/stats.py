"""Dataset statistics: objects per class and split, factor histograms, and the histogram of pair relative angles.

Only ``meta.json``, ``latents.npy`` and ``rotations.npy`` of each sample are kept (each shard read once, front to
back, by `orbitset.shard_scan.scan_shard`); images are never decoded. The relative angle of a pair of views (a, b) is
the angle of R_a^T R_b (`orbitset.geometry.geodesic_angle`), over every pair of distinct views of each object.

Histograms are accumulated as the samples stream by, so memory does not grow with the dataset: a factor whose range
the manifest gives, and the relative angle (range [0, pi]), are binned at once; a factor without a recorded range is
binned over its observed [min, max] in a second pass that reads only ``latents.npy``.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orbitset import geometry
from orbitset.errors import ManifestError, ShardError
from orbitset.manifests.model import Manifest, load_manifest, manifest_path
from orbitset.progress import object_progress
from orbitset.schema import load_json, read_npy
from orbitset.shard_scan import ScannedSample, scan_shard

BINS = 20
#: Objects whose factors and view pairs are binned together (one numpy call each): bounds what is held at once.
BATCH = 64
_STATS_FIELDS = ("meta.json", "latents.npy", "rotations.npy")
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


class HistogramAccumulator:
    """A `Histogram` built from values given in chunks: counts, min, max and mean without keeping the values.

    Values are clipped to [low, high] before binning, as `Histogram.of` does with the same range; the result equals
    `Histogram.of` over all the values (counts exactly, the mean up to rounding)."""

    def __init__(self, name: str, unit: str, low: float, high: float):
        self.name, self.unit = name, unit
        self.low, self.high = low, (high if high > low else low + 1.0)
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.total, self.size = 0.0, 0
        self.minimum, self.maximum = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        self.counts += np.histogram(np.clip(values, self.low, self.high), bins=BINS, range=(self.low, self.high))[0]
        self.total += float(values.sum())
        self.size += values.size
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))

    def histogram(self) -> Histogram:
        if self.size == 0:
            return Histogram(self.name, self.unit, np.linspace(0.0, 1.0, BINS + 1), np.zeros(BINS, dtype=np.int64))
        edges = np.histogram_bin_edges(np.empty(0), bins=BINS, range=(self.low, self.high))
        return Histogram(self.name, self.unit, edges, self.counts.copy(), self.minimum, self.maximum, self.total / self.size)


class _Batches:
    """Factor and relative-angle accumulators fed one object at a time and updated `BATCH` objects at once (numpy
    calls per batch, not per object). Factors without a recorded range only track their observed [min, max] here."""

    def __init__(self, factors: list[tuple[str, str, float | None, float | None]]):
        self.ranges = factors
        self.factors: list[HistogramAccumulator | None] = [
            HistogramAccumulator(n, u, lo, hi) if lo is not None and hi is not None else None for n, u, lo, hi in factors]
        self.observed: list[tuple[float, float]] = []  # per latent column: (min, max)
        self.angles = HistogramAccumulator("relative angle", "rad", 0.0, math.pi)
        self._latents: list[np.ndarray] = []
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, latents: np.ndarray, rotations: np.ndarray) -> None:
        self._latents.append(latents.reshape(len(latents), -1))
        first, second = np.triu_indices(len(rotations), k=1)
        if first.size:
            self._pairs.append((rotations[first], rotations[second]))
        if len(self._latents) >= BATCH:
            self.flush()

    def flush(self) -> None:
        columns = max((block.shape[1] for block in self._latents), default=0)
        if not self.ranges and columns:  # no factors in the manifest: name the columns
            self.ranges = [(f"factor{i}", "", None, None) for i in range(columns)]
            self.factors = [None] * columns
        self.observed += [(math.inf, -math.inf)] * (columns - len(self.observed))
        for column in range(min(columns, len(self.factors))):
            values = np.concatenate([block[:, column] for block in self._latents if block.shape[1] > column])
            if self.factors[column] is not None:
                self.factors[column].add(values)
            elif values.size:
                low, high = self.observed[column]
                self.observed[column] = (min(low, float(values.min())), max(high, float(values.max())))
        if self._pairs:
            rot_a = np.concatenate([a for a, _ in self._pairs])
            rot_b = np.concatenate([b for _, b in self._pairs])
            self.angles.add(np.asarray(geometry.geodesic_angle(rot_a, rot_b)))
        self._latents, self._pairs = [], []

    def unranged(self) -> dict[int, HistogramAccumulator]:
        """Accumulators, now with their range (the recorded bound where there is one, else the observed one), of the
        columns that need a second pass."""
        out = {}
        for column in range(min(len(self.ranges), len(self.observed))):
            if self.factors[column] is None:
                name, unit, low, high = self.ranges[column]
                seen_low, seen_high = self.observed[column]
                out[column] = HistogramAccumulator(name, unit, seen_low if low is None else low,
                                                   seen_high if high is None else high)
        return out

    def histograms(self, unranged: dict[int, HistogramAccumulator]) -> list[Histogram]:
        columns = min(len(self.ranges), len(self.observed))
        return [(self.factors[i] or unranged[i]).histogram() for i in range(columns)]


def check_not_empty(manifest: Manifest, path: str | os.PathLike, split: str | None = None) -> None:
    """ManifestError in one line when `manifest` lists no object (in `split`), saying how many failed to render."""
    if any(entry.objects for entry in manifest.shards_for(split)):
        return
    where = f" in split {split!r}" if split else ""
    failed = f"; {len(manifest.failures)} objects failed to render (see its manifest's failures)" if manifest.failures else ""
    raise ManifestError(f"{path}: the dataset holds no objects{where}{failed}")


def dataset_stats(path: str | os.PathLike, split: str | None = None, progress: bool = False) -> DatasetStats:
    """Statistics of the dataset at `path` (folder or manifest), over `split` or all splits; `progress` shows objects
    read, objects/s and ETA on stderr. Memory does not grow with the number of objects."""
    file = manifest_path(path)
    manifest = load_manifest(file)
    check_not_empty(manifest, path, split)
    stats = DatasetStats(manifest=manifest)
    entries = manifest.shards_for(split)
    batches = _Batches([(f.name, f.unit, f.low, f.high) for f in manifest.factors])
    with object_progress(sum(e.objects for e in entries), "stats", progress) as bar:
        for entry in entries:
            for sample in scan_shard(file.parent / entry.name, _STATS_FIELDS):
                meta, latents, rotations = _read_stats_fields(entry.name, sample)
                stats.counts[(entry.split, str(meta["class_name"]))] += 1
                stats.views += len(latents)
                batches.add(latents, rotations)
                bar.update(1)
    batches.flush()
    unranged = batches.unranged()
    if unranged:
        _bin_unranged(file.parent, entries, unranged, progress)
    stats.factors = batches.histograms(unranged)
    stats.relative_angle = batches.angles.histogram()
    return stats


def _bin_unranged(root: Path, entries: list, unranged: dict[int, HistogramAccumulator], progress: bool) -> None:
    """The second pass: bin the latent columns in `unranged` (whose ranges are now known), reading only latents."""
    with object_progress(sum(e.objects for e in entries), "stats (factors without a range)", progress) as bar:
        for entry in entries:
            for sample in scan_shard(root / entry.name, ("latents.npy",)):
                latents = read_npy(sample.data["latents.npy"], f"{entry.name} sample {sample.key!r} latents.npy")
                for column, accumulator in unranged.items():
                    accumulator.add(latents.reshape(len(latents), -1)[:, column])
                bar.update(1)


def _read_stats_fields(shard: str, sample: ScannedSample) -> tuple[dict, np.ndarray, np.ndarray]:
    """(meta, latents, rotations) of a scanned sample; ShardError naming the shard and key when a field is missing
    or unreadable."""
    where = f"{shard} sample {sample.key!r}"
    missing = [name for name in _STATS_FIELDS if name not in sample.data]
    if missing:
        raise ShardError(f"{where} has no {', '.join(missing)}; not an orbitset sample, re-render or re-download it")
    return (load_json(sample.data["meta.json"], f"{where} meta.json"),
            read_npy(sample.data["latents.npy"], f"{where} latents.npy"),
            read_npy(sample.data["rotations.npy"], f"{where} rotations.npy"))
