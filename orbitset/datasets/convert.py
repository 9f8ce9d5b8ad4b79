"""Convert 3DIEBench's published layout to orbitset shards, and export orbitset datasets back to that layout.

The original layout (REFERENCE.md): ``SRC/SYNSET/OBJECT_ID/image_{i}.jpg`` and ``latent_{i}.npy`` (float64, shape (F,),
F = 7, or 10 for 3DIEBench-T), i = 0..49, and split files ``train_images.npy`` / ``val_images.npy`` (entries like
``/02691156/<id>/``) with ``train_labels.npy`` / ``val_labels.npy`` (class index = position of the synset in the sorted
list of synsets). Every ``.npy`` is read with ``allow_pickle=False``.

Conversion writes one object sample per object (`orbitset.schema`): images copied byte for byte (no re-encode),
latents (V, F) float64, rotations = `geometry.euler_to_matrix` of latents[:, :3] ("xyz" extrinsic), for 3DIEBench-T
translations = R @ t (the object-frame translation t = latents[:, 7:10] expressed in the world frame), the 3DIEBench
camera, and ``meta["channel_order"] = "bgr"``: the published JPEGs have red and blue swapped (written by OpenCV from an
RGB array), which loaders undo at decode time. Objects go to shards per split in a fixed shuffled order (seeded), one
shard per task; shards are the unit of parallel work, so the output does not depend on the worker count. Objects with
missing views or unreadable files are recorded in the manifest's failures and skipped.
"""

from __future__ import annotations

import io
import math
import os
import re
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from orbitset import geometry
from orbitset.errors import AssetError, OrbitsetError
from orbitset.manifests.model import Factor, Failure, Manifest, ShardEntry, software_versions, write_manifest
from orbitset.schema import ObjectSample, load_npy
from orbitset.shards import write_shard
from orbitset.testing import FACTORS_3DIEBENCH

#: Split files of the original layout: ``<split>_images.npy`` and ``<split>_labels.npy``.
IMAGES_SUFFIX, LABELS_SUFFIX = "_images.npy", "_labels.npy"
ALL_SPLIT = "all"
CHANNEL_NOTE = (
    "the published 3DIEBench JPEGs have red and blue swapped (written with OpenCV from an RGB array); "
    "swap channels 0 and 2 after decoding to get RGB"
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_JPEG_MAGIC = b"\xff\xd8"


@dataclass(frozen=True)
class Layout:
    """A published variant: its factors (name, unit, low, high) and whether latents[:, 7:10] is a translation."""

    name: str
    factors: tuple[tuple[str, str, float, float], ...]
    translation: bool = False


_TRANSLATION = tuple((f"trans_{axis}", "scene", -0.5, 0.5) for axis in "xyz")
_OOD_ROTATION = tuple((name, unit, -math.pi, math.pi) for name, unit, _, _ in FACTORS_3DIEBENCH[:3])
LAYOUTS = {
    "3diebench": Layout("3diebench", FACTORS_3DIEBENCH),
    "3diebench-t": Layout("3diebench-t", FACTORS_3DIEBENCH + _TRANSLATION, translation=True),
    # OOD angles are drawn from [-pi, -pi/2] U [pi/2, pi]; the range recorded is the enclosing [-pi, pi].
    "3diebench-ood": Layout("3diebench-ood", _OOD_ROTATION + FACTORS_3DIEBENCH[3:]),
}


def _layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise AssetError(f"unknown layout {name!r}; choose one of {sorted(LAYOUTS)}") from None


@dataclass(frozen=True)
class SourceObject:
    """One object folder of the original tree, with its split and class index."""

    synset: str
    object_id: str
    split: str
    class_index: int

    @property
    def relative(self) -> str:
        return f"{self.synset}/{self.object_id}"

    @property
    def key(self) -> str:
        from orbitset.datasets.sources import key_part

        return f"{key_part(self.synset)}__{key_part(self.object_id)}"


@dataclass
class SourceTree:
    """What `scan_tree` found: classes (sorted synsets), objects to convert, and objects already known to fail."""

    root: Path
    layout: Layout
    views: int
    classes: list[str]
    objects: list[SourceObject]
    failures: list[Failure] = field(default_factory=list)

    def files(self, obj: SourceObject) -> list[Path]:
        folder = self.root / obj.synset / obj.object_id
        return [folder / f"{kind}_{i}.{ext}" for i in range(self.views) for kind, ext in (("image", "jpg"), ("latent", "npy"))]


def _load_plain_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise AssetError(f"{path}: not a plain .npy array ({exc}); object arrays are never unpickled") from exc


def _split_entry(entry: Any, file: Path) -> tuple[str, str]:
    text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
    parts = [p for p in text.strip().split("/") if p]
    if len(parts) != 2 or not all(_SAFE_NAME.match(p) for p in parts):
        raise AssetError(f"{file}: entry {text!r} is not '/SYNSET/OBJECT_ID/'")
    return parts[0], parts[1]


def read_split_files(folder: str | os.PathLike) -> dict[str, list[tuple[str, str, int | None]]]:
    """``<split>_images.npy`` (+ ``<split>_labels.npy`` when present) -> split -> [(synset, object_id, label)]."""
    folder = Path(folder)
    splits: dict[str, list[tuple[str, str, int | None]]] = {}
    for images_file in sorted(folder.glob("*" + IMAGES_SUFFIX)):
        split = images_file.name[: -len(IMAGES_SUFFIX)]
        entries = [_split_entry(e, images_file) for e in _load_plain_npy(images_file).reshape(-1)]
        labels_file = folder / f"{split}{LABELS_SUFFIX}"
        labels: list[int | None] = [None] * len(entries)
        if labels_file.exists():
            array = _load_plain_npy(labels_file).reshape(-1)
            if len(array) != len(entries) or array.dtype.kind not in "iu":
                raise AssetError(f"{labels_file}: expected {len(entries)} integer labels, got {len(array)} of {array.dtype}")
            labels = [int(v) for v in array]
        splits[split] = [(s, o, label) for (s, o), label in zip(entries, labels)]
    return splits


def scan_tree(src: str | os.PathLike, layout: str = "3diebench", splits_from: str | os.PathLike | None = None, views: int = 50) -> SourceTree:
    """List the objects of the tree `src` and assign splits and classes (sorted synsets); nothing is read yet.

    Split files come from `splits_from` (or `src` when it holds ``*_images.npy``); without any, every object goes
    to the split ``all``. Labels in the split files must follow the sorted-synset rule (AssetError otherwise).
    """
    root = Path(src)
    if not root.is_dir():
        raise AssetError(f"{root} is not a folder; point at the root of the SYNSET/OBJECT_ID/ tree")
    on_disk = {
        (synset.name, obj.name)
        for synset in sorted(root.iterdir())
        if synset.is_dir() and not synset.name.startswith(".")
        for obj in sorted(synset.iterdir())
        if obj.is_dir() and not obj.name.startswith(".")
    }
    split_folder = Path(splits_from) if splits_from is not None else root
    listed = read_split_files(split_folder)
    if splits_from is not None and not listed:
        raise AssetError(f"{split_folder} has no '*{IMAGES_SUFFIX}' split files (e.g. train{IMAGES_SUFFIX})")
    wanted = {split: [(s, o) for s, o, _ in entries] for split, entries in listed.items()}
    if not listed:
        wanted = {ALL_SPLIT: sorted(on_disk)}
    classes = sorted({s for s, _ in on_disk} | {s for entries in wanted.values() for s, _ in entries})
    index = {synset: i for i, synset in enumerate(classes)}
    for split, entries in listed.items():
        for synset, object_id, label in entries:
            if label is not None and label != index[synset]:
                raise AssetError(
                    f"{split_folder / (split + LABELS_SUFFIX)}: label {label} of /{synset}/{object_id}/ is not the position "
                    f"{index[synset]} of its synset among the {len(classes)} sorted synsets; is a synset folder missing "
                    f"from {root}?"
                )
    tree = SourceTree(root=root, layout=_layout(layout), views=views, classes=classes, objects=[])
    assigned: set[tuple[str, str]] = set()
    keys: set[str] = set()
    for split, entries in wanted.items():
        for synset, object_id in entries:
            obj = SourceObject(synset, object_id, split, index[synset])
            if (synset, object_id) not in on_disk:
                tree.failures.append(Failure(obj.relative, f"listed in {split}{IMAGES_SUFFIX} but not found under {root}"))
            elif (synset, object_id) in assigned or obj.key in keys:
                tree.failures.append(Failure(obj.relative, f"listed twice (again in {split}), or its key {obj.key!r} is taken"))
            else:
                assigned.add((synset, object_id))
                keys.add(obj.key)
                tree.objects.append(obj)
    for synset, object_id in sorted(on_disk - assigned):
        if not any(f.object == f"{synset}/{object_id}" for f in tree.failures):
            tree.failures.append(Failure(f"{synset}/{object_id}", "not listed in any split file; skipped"))
    return tree


_PLAIN_LATENT_HEADER = re.compile(rb"^\{'descr': '<f8', 'fortran_order': False, 'shape': \((\d+),\), \} *\n$")


def _read_latent(raw: bytes, what: str) -> np.ndarray:
    """A (F,) float64 .npy as the original generator saves it, parsed without numpy's literal_eval of the header
    (the slowest step of np.load on tiny files); anything else goes through `orbitset.schema.load_npy`."""
    if raw[:8] == b"\x93NUMPY\x01\x00" and len(raw) >= 10:
        end = 10 + int.from_bytes(raw[8:10], "little")
        match = _PLAIN_LATENT_HEADER.match(raw[10:end])
        if match and len(raw) - end == 8 * int(match.group(1)):
            return np.frombuffer(raw, dtype="<f8", offset=end)
    return load_npy(raw, what)


def read_object(tree: SourceTree, obj: SourceObject) -> tuple[ObjectSample, int]:
    """Read one object folder into a validated ObjectSample; returns it and the bytes read. AssetError if incomplete."""
    from PIL import Image

    from orbitset.render.scene import CameraSpec, SceneSpec

    folder = tree.root / obj.synset / obj.object_id
    try:
        present = set(os.listdir(folder))
    except OSError as exc:
        raise AssetError(f"cannot list {folder}: {exc}") from exc
    needed = [f"{kind}_{i}.{ext}" for i in range(tree.views) for kind, ext in (("image", "jpg"), ("latent", "npy"))]
    missing = [name for name in needed if name not in present]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise AssetError(f"missing {shown} (expected {tree.views} views)")
    images: list[bytes] = []
    latents: list[np.ndarray] = []
    size = 0
    for i in range(tree.views):
        try:
            image = (folder / f"image_{i}.jpg").read_bytes()
            raw = (folder / f"latent_{i}.npy").read_bytes()
        except OSError as exc:
            raise AssetError(f"unreadable view {i}: {exc}") from exc
        if not image.startswith(_JPEG_MAGIC):
            raise AssetError(f"image_{i}.jpg is not a JPEG file")
        latent = _read_latent(raw, f"latent_{i}.npy")
        if latent.shape != (len(tree.layout.factors),) or latent.dtype.kind != "f":
            raise AssetError(
                f"latent_{i}.npy has shape {latent.shape} dtype {latent.dtype}; {tree.layout.name} has "
                f"{len(tree.layout.factors)} float latents per view"
            )
        images.append(image)
        latents.append(latent)
        size += len(image) + len(raw)
    table = np.stack(latents).astype(np.float64)
    if not np.all(np.isfinite(table)):
        raise AssetError("latents contain NaN or infinite values")
    rotations = np.asarray(geometry.euler_to_matrix(table[:, :3]))
    try:
        width, height = Image.open(io.BytesIO(images[0])).size
    except Exception as exc:  # PIL raises many types for broken headers
        raise AssetError(f"image_0.jpg has an unreadable header ({exc})") from exc
    camera = CameraSpec()
    meta = {
        "class_name": obj.synset,
        "class_index": obj.class_index,
        "num_views": tree.views,
        "factor_names": [f[0] for f in tree.layout.factors],
        "factor_units": [f[1] for f in tree.layout.factors],
        "source": tree.layout.name,
        "source_id": obj.relative,
        "channel_order": "bgr",
        "channel_note": CHANNEL_NOTE,
    }
    sample = ObjectSample(
        key=obj.key,
        images=images,
        latents=table,
        rotations=rotations,
        camera={"width": width, "height": height, "K": SceneSpec(width=width, height=height).intrinsics().tolist(),
                "extrinsics": camera.extrinsics().tolist()},
        meta=meta,
        translations=np.einsum("vij,vj->vi", rotations, table[:, 7:10]) if tree.layout.translation else None,
    )
    return sample.validate(), size


# --- conversion ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    images: int
    bytes: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / max(self.seconds, 1e-9)

    def describe(self) -> str:
        return (f"{self.images} images ({self.bytes / 1e6:.1f} MB) in {self.seconds:.2f} s: "
                f"{self.images_per_second:,.0f} images/s, {self.megabytes_per_second:.1f} MB/s")


@dataclass
class ConvertReport:
    manifest: Manifest
    throughput: Throughput

    def summary(self) -> str:
        totals = self.manifest.totals()
        return (f"converted {totals['objects']} objects into {totals['shards']} shards "
                f"({len(self.manifest.failures)} failed, see the manifest); read {self.throughput.describe()}")


@dataclass(frozen=True)
class _ShardTask:
    path: Path
    split: str
    objects: tuple[SourceObject, ...]


_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _convert_shard(tree: SourceTree, task: _ShardTask, report: Callable[[int, int], None] | None = None) -> tuple[ShardEntry | None, list[Failure]]:
    """Write one shard from its objects; failed objects are returned, not raised. None if every object failed."""
    failures: list[Failure] = []
    report = report or (lambda images, size: _progress_queue.put((images, size)) if _progress_queue else None)

    def samples() -> Iterator[dict[str, Any]]:
        for obj in task.objects:
            try:
                sample, size = read_object(tree, obj)
            except (OrbitsetError, OSError) as exc:
                failures.append(Failure(obj.relative, str(exc)))
                report(0, 0)
                continue
            report(sample.num_views, size)
            yield sample.encode()

    info = write_shard(task.path, samples())
    if info.objects == 0:
        task.path.unlink()
        return None, failures
    return ShardEntry.from_info(info, task.split), failures


def _plan(tree: SourceTree, out: Path, objects_per_shard: int, seed: int) -> list[_ShardTask]:
    tasks: list[_ShardTask] = []
    splits: dict[str, list[SourceObject]] = {}
    for obj in tree.objects:
        splits.setdefault(obj.split, []).append(obj)
    for split in sorted(splits):
        ordered = sorted(splits[split], key=lambda o: (o.synset, o.object_id))
        order = np.random.default_rng(seed).permutation(len(ordered))
        shuffled = [ordered[i] for i in order]
        for number, start in enumerate(range(0, len(shuffled), objects_per_shard)):
            path = out / f"{split}-{number:06d}.tar"
            tasks.append(_ShardTask(path, split, tuple(shuffled[start : start + objects_per_shard])))
    return tasks


def convert_3diebench(
    src: str | os.PathLike,
    out: str | os.PathLike,
    layout: str = "3diebench",
    splits_from: str | os.PathLike | None = None,
    views: int = 50,
    workers: int | None = None,
    objects_per_shard: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> ConvertReport:
    """Convert the tree `src` into shards + manifest in `out`; see the module docstring. Returns the manifest and rate.

    `workers` processes each write whole shards (1 = in this process); the shards and manifest do not depend on it.
    """
    tree = scan_tree(src, layout, splits_from, views)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = _plan(tree, out, objects_per_shard, seed)
    workers = workers or min(4, os.cpu_count() or 1)
    total_images = len(tree.objects) * views
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_images, unit="img", unit_scale=True, desc=f"convert {layout}", smoothing=0.1)
    read = Counter()

    def account(images: int, size: int) -> None:
        read["images"] += images
        read["bytes"] += size
        if bar is not None:
            bar.update(views if images == 0 else images)  # a failed object still counts as done
            bar.set_postfix_str(f"{read['bytes'] / 1e6 / max(time.monotonic() - started, 1e-9):.1f} MB/s", refresh=False)

    geometry.euler_to_matrix(np.zeros((1, 3)))  # first use imports roma/torch parts: keep it out of the timing
    started = time.monotonic()
    results: list[tuple[ShardEntry | None, list[Failure]]] = []
    try:
        if workers == 1 or len(tasks) <= 1:
            results = [_convert_shard(tree, task, account) for task in tasks]
        else:
            results = _run_in_processes(tree, tasks, workers, account)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.monotonic() - started
    entries = [entry for entry, _ in results if entry is not None]
    failures = sorted(tree.failures + [f for _, fs in results for f in fs], key=lambda f: f.object)
    manifest = Manifest(
        name=tree.layout.name,
        shards=entries,
        classes=tree.classes,
        factors=[Factor(n, u, lo, hi) for n, u, lo, hi in tree.layout.factors],
        recipe={"converter": tree.layout.name, "views": views, "objects_per_shard": objects_per_shard,
                "order": "sorted (synset, object id), then shuffled per split", "seed": seed},
        seed=seed,
        failures=failures,
        software=software_versions(),
        extra={"channel_order": "bgr", "channel_note": CHANNEL_NOTE, "source_layout": "SYNSET/OBJECT_ID/image_{i}.jpg"},
    )
    write_manifest(manifest, out)
    return ConvertReport(manifest, Throughput(read["images"], read["bytes"], seconds))


def _run_in_processes(tree: SourceTree, tasks: list[_ShardTask], workers: int, account: Callable[[int, int], None]) -> list:
    import multiprocessing
    import queue as queue_module

    # fork where there is one: a spawned worker would spend seconds importing torch before its first object
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    progress = context.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(progress,)) as pool:
        futures = [pool.submit(_convert_shard, tree, task) for task in tasks]
        while not all(f.done() for f in futures):
            try:
                account(*progress.get(timeout=0.2))
            except queue_module.Empty:
                pass
        results = [f.result() for f in futures]
    while True:
        try:
            account(*progress.get(timeout=0.2))
        except queue_module.Empty:
            break
    return results


def read_throughput(tree: SourceTree, workers: int | None = None) -> Throughput:
    """Baseline: read every file conversion reads (image and latent of each view) and discard it, with `workers`
    threads; the best a converter bound by reads can do on this disk and page-cache state."""
    workers = workers or min(4, os.cpu_count() or 1)
    files = [path for obj in tree.objects for path in tree.files(obj)]

    def read(path: Path) -> int:
        try:
            with open(path, "rb") as handle:
                return len(handle.read())
        except OSError:
            return 0

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        size = sum(pool.map(read, files, chunksize=256))
    return Throughput(len(files) // 2, size, time.monotonic() - started)


# --- export ----------------------------------------------------------------------------------------------------


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
        if _SAFE_NAME.match(synset) and _SAFE_NAME.match(object_id):
            return synset, object_id
    name = str(sample.meta.get("class_name", ""))
    return (name if _SAFE_NAME.match(name) else class_part), object_part


def export_sie_layout(dataset: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> ExportReport:
    """Write the dataset as ``out/SYNSET/OBJ/image_{i}.<fmt>`` + ``latent_{i}.npy`` (float64, (F,)) and, per split,
    ``out/<split>_images.npy`` (entries ``/SYNSET/OBJ/``) and ``out/<split>_labels.npy`` (int64 class indices).

    The dataset is verified (size + sha256) first; images are written byte for byte as stored.
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
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=manifest.totals()["objects"], unit="obj", desc="export sie-layout")
    try:
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
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for split in entries:
        np.save(out / f"{split}{IMAGES_SUFFIX}", np.array(entries[split], dtype=str), allow_pickle=False)
        np.save(out / f"{split}{LABELS_SUFFIX}", np.array(labels[split], dtype=np.int64), allow_pickle=False)
    return ExportReport(out, objects, images, {split: len(v) for split, v in entries.items()})
