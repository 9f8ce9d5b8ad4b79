"""Convert a 3DIEBench-layout source (archive, tree, Hub dataset; see `orbitset.datasets.sie_source`) into orbitset
shards and a manifest, while it streams: nothing is unpacked, each object becomes a sample as soon as its files are in.

Order and sharding: objects keep source order. Each split's objects are numbered in the order they arrive, and object
n of split s goes to ``s-{n // objects_per_shard:06d}.tar``; a broken object keeps its number (its shard is one object
short). The shards therefore depend only on the source's order and content: an archive made from a tree in sorted
order converts to the same bytes as the tree. Each split's current shard is held in memory until it is complete, then
written by one helper process while reading goes on (one shard at a time), so at most one partial shard is ever on
disk.

Resuming: shards are recorded by `orbitset.shards.ShardWriter`, which puts a sidecar beside each (its entry, its
objects, its failures, the settings). A rerun with the same settings keeps the complete shards, reads the source again
from its start and skips their objects without converting them. The manifest is written last. Broken objects
(missing or extra views, unreadable latents, files that are not JPEGs) are recorded in the manifest's failures and
skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orbitset import threediebench
from orbitset.datasets.sie_layout import (
    ALL_SPLIT,
    CHANNEL_NOTE,
    IMAGES_SUFFIX,
    FIX_QUALITY,
    FIXED_NOTE,
    Layout,
    ObjectFiles,
    Splits,
    build_samples,
    layout_named,
    splits_from_files,
)
from orbitset.datasets.sie_source import ObjectSource, open_source
from orbitset.errors import AssetError, DownloadError, OrbitsetError
from orbitset.manifests.download import DownloadOptions
from orbitset.manifests.model import MANIFEST_NAME, Factor, Failure, Manifest, load_manifest, software_versions
from orbitset.shards import ShardWriter, shard_name, write_shard

@dataclass(frozen=True)
class ConvertSettings:
    """What fixes the output bytes: the layout, views per object, objects per shard, whether colours are fixed."""

    layout: str = "3diebench"
    views: int = threediebench.VIEWS
    objects_per_shard: int = 256
    fix_colors: bool = False


@dataclass
class ConvertReport:
    """What a conversion did: the manifest written, shards kept from an earlier run, source bytes read, seconds."""

    manifest: Manifest
    kept: int = 0
    written: int = 0
    read_bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        totals = self.manifest.totals()
        rate = self.read_bytes / 1e6 / max(self.seconds, 1e-9)
        return (f"converted {totals['objects']} objects ({totals['views']} views) into {totals['shards']} shards "
                f"({self.kept} kept from an earlier run); {len(self.manifest.failures)} objects failed (see the "
                f"manifest); read {self.read_bytes / 1e6:.1f} MB of source in {self.seconds:.1f} s ({rate:.1f} MB/s)")


@dataclass
class _Shard:
    """A split's shard being filled in memory: its name and, in arrival order, its objects' keys and what they are
    (the folder's files, or why the folder cannot be used)."""

    split: str
    name: str
    keys: list[str] = field(default_factory=list)
    objects: list[ObjectFiles | str] = field(default_factory=list)

    def build(self, layout: Layout, settings: ConvertSettings) -> tuple[list[dict[str, Any]], list[Failure]]:
        """Encoded samples and failures (in arrival order) of the shard's objects."""
        usable = [obj for obj in self.objects if isinstance(obj, ObjectFiles)]
        built = iter(build_samples(layout, usable, settings.views, settings.fix_colors))
        samples: list[dict[str, Any]] = []
        failures: list[Failure] = []
        for key, obj in zip(self.keys, self.objects):
            result = next(built) if isinstance(obj, ObjectFiles) else AssetError(obj)
            try:
                if isinstance(result, OrbitsetError):
                    raise result
                samples.append(result.encode())
            except OrbitsetError as exc:
                failures.append(Failure(key, str(exc)))
        return samples, failures


def _ignore_interrupts() -> None:
    """In the shard-writing process: Ctrl-C stops the reading process only, which then waits for the shard in hand."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _ShardProcess:
    """Writes whole shards (`orbitset.shards.write_shard`) in one helper process while this one reads and converts
    the next objects; one shard at a time, so at most one partial shard is on disk. Each shard is recorded with the
    `ShardWriter` (its sidecar) as soon as it is written; `close` waits for the last one."""

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork where there is one (no re-import of torch); started now, before any reader thread exists
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_ignore_interrupts)
        self._pool.submit(int).result()
        self._pending: tuple[Any, list[str], list[Failure]] | None = None

    def submit(self, writer: ShardWriter, shard: _Shard, samples: list[dict[str, Any]], failures: list[Failure]) -> None:
        self.wait(writer)
        if not samples:  # every object failed: a sidecar, no tar
            writer.write_shard(shard.name, shard.split, shard.keys, [], failures)
            return
        future = self._pool.submit(write_shard, writer.directory / shard.name, samples, shard.split)
        self._pending = (future, shard.keys, failures)

    def wait(self, writer: ShardWriter) -> None:
        if self._pending is not None:
            (future, keys, failures), self._pending = self._pending, None
            writer.record(future.result(), keys, failures)

    def close(self) -> None:
        self._pool.shutdown()


class _Progress:
    """A tqdm bar over source bytes (or objects when the size is unknown) showing objects converted and ETA."""

    def __init__(self, source: ObjectSource, enabled: bool, label: str):
        self._source = source
        self._bar = None
        self._objects = 0
        self._by_objects = source.total_bytes is None
        if enabled:
            from tqdm import tqdm

            total = source.objects_total if self._by_objects else source.total_bytes
            unit = "obj" if self._by_objects else "B"
            self._bar = tqdm(total=total, unit=unit, unit_scale=True, unit_divisor=1000, desc=label, smoothing=0.05)

    def object_done(self) -> None:
        self._objects += 1
        if self._bar is not None:
            self._bar.update(1 if self._by_objects else self._source.read_bytes() - self._bar.n)
            if self._objects % 16 == 0:
                self._bar.set_postfix_str(f"{self._objects:,} objects", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def read_split_dir(location: str, options: DownloadOptions = DownloadOptions()) -> dict[str, bytes]:
    """The ``<split>_images.npy`` / ``<split>_labels.npy`` files of a local folder, or of a URL folder (``train`` and
    ``val`` are tried there); AssetError when there are none."""
    from orbitset.datasets.remote import fetch_small
    from orbitset.manifests.download import _local_path, _scheme

    files: dict[str, bytes] = {}
    if _scheme(location) in ("", "file"):
        folder = _local_path(location)
        files = {p.name: p.read_bytes() for p in sorted(folder.glob("*_images.npy")) + sorted(folder.glob("*_labels.npy"))}
    else:
        for name in (f"{split}_{kind}.npy" for split in ("train", "val") for kind in ("images", "labels")):
            try:
                files[name] = fetch_small(location.rstrip("/") + "/" + name, options=options)
            except DownloadError as exc:
                if "not found" not in str(exc):
                    raise
    if not any(name.endswith(IMAGES_SUFFIX) for name in files):
        raise AssetError(f"{location} has no '*{IMAGES_SUFFIX}' split files (e.g. train{IMAGES_SUFFIX})")
    return files


def convert_source(
    src: str | os.PathLike,
    out: str | os.PathLike,
    settings: ConvertSettings = ConvertSettings(),
    split_files: Mapping[str, bytes] | None = None,
    jobs: int = 8,
    progress: bool = True,
    options: DownloadOptions = DownloadOptions(),
) -> ConvertReport:
    """Convert the source `src` (archive or tree, local path or URL) into shards + manifest in `out`; see the module
    docstring. Split assignment comes from `split_files` (file name -> bytes), else from split files found in the
    source; a tree without any puts every object in the split ``all``, an archive without any is refused.
    `jobs` threads read a tree's files ahead of use.

    Raises DownloadError when the source breaks off (the shards written so far are kept; rerun to resume), ShardError
    when `out` holds shards converted with other settings.
    """
    src = str(src)
    out = Path(out)
    layout = layout_named(settings.layout)
    if (out / MANIFEST_NAME).exists():
        raise AssetError(f"{out} already holds a converted dataset ({MANIFEST_NAME}); choose another --out")
    started = time.monotonic()
    shards = _ShardProcess()  # before any reader thread exists
    try:
        return _convert(src, out, layout, settings, split_files, jobs, progress, options, shards, started)
    finally:
        shards.close()


def _convert(src: str, out: Path, layout: Layout, settings: ConvertSettings, split_files: Mapping[str, bytes] | None,
             jobs: int, progress: bool, options: DownloadOptions, shards: _ShardProcess, started: float) -> ConvertReport:
    kept: set[str] = set()
    source = open_source(src, skip=lambda s, o: f"{s}/{o}" in kept, jobs=jobs, options=options)
    files = dict(split_files) if split_files else source.split_files
    if not files and source.synsets is None:
        raise AssetError(f"{src} is an archive: its split files are needed before it is read; pass --splits-from DIR|URL "
                         "(a folder holding train_images.npy, val_images.npy and their *_labels.npy)")
    splits = splits_from_files(files, known_synsets=None if files else source.synsets)
    default_split = None if files else ALL_SPLIT
    index = {synset: i for i, synset in enumerate(splits.classes)}
    identity = {"converter": layout.name, "views": settings.views, "fix_colors": settings.fix_colors,
                "objects_per_shard": settings.objects_per_shard, "split_files": splits.files}
    writer = ShardWriter(out, objects_per_shard=settings.objects_per_shard, identity=identity)
    for split in sorted({split for split, _ in splits.assigned.values()} | ({default_split} - {None})):
        kept.update(writer.resume(split))
    kept_shards = len(writer.records)
    bar = _Progress(source, progress, f"convert {layout.name}")
    pending: dict[str, _Shard] = {}
    count: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    failures: list[Failure] = []

    def flush(shard: _Shard) -> None:
        shards.submit(writer, shard, *shard.build(layout, settings))
        del pending[shard.split]

    try:
        for obj in source.objects:
            key = f"{obj.synset}/{obj.object_id}"
            assigned = splits.assigned.get((obj.synset, obj.object_id))
            if assigned is None and default_split is not None and obj.synset in index:
                assigned = (default_split, index[obj.synset])
            if assigned is None or (obj.synset, obj.object_id) in seen:
                why = "not listed in any split file" if assigned is None else "its files appear in two places of the source"
                failures.append(Failure(key, why + "; skipped"))
                continue
            seen.add((obj.synset, obj.object_id))
            split, class_index = assigned
            number = count.get(split, 0)
            count[split] = number + 1
            bar.object_done()
            if key in kept:
                continue
            shard = pending.setdefault(split, _Shard(split, shard_name(split, number // settings.objects_per_shard)))
            shard.keys.append(key)
            usable = obj.problem is None and obj.files is not None
            shard.objects.append(ObjectFiles(obj.synset, obj.object_id, class_index, obj.files) if usable  # type: ignore[arg-type]
                                 else obj.problem or "not read")
            if len(shard.keys) == settings.objects_per_shard:
                flush(shard)
        for shard in list(pending.values()):
            flush(shard)
    except DownloadError as exc:
        stopped: DownloadError | None = exc
    else:
        stopped = None
    finally:
        shards.wait(writer)  # the shard being written is finished and recorded, whatever stopped the reading
        bar.close()
    if stopped is not None:
        raise DownloadError(f"{stopped}; {len(writer.records)} complete shard(s) are kept in {out}: run the same command "
                            "again to resume (the source is read again from its start, the kept shards' objects are "
                            "skipped)")
    missing = [Failure(f"{s}/{o}", f"listed in {split}{IMAGES_SUFFIX} but not found in the source")
               for (s, o), (split, _) in splits.assigned.items() if (s, o) not in seen]
    twice = [Failure(f"{s}/{o}", f"listed twice (again in {split}{IMAGES_SUFFIX}); the first listing is used")
             for s, o, split in splits.duplicates]
    manifest = writer.write_manifest(failures=sorted(failures + missing + twice, key=lambda f: (f.object, f.reason)),
                                     **_manifest_fields(layout, settings, splits, src))
    return ConvertReport(manifest, kept=kept_shards, written=len(writer.records) - kept_shards,
                         read_bytes=source.read_bytes(), seconds=time.monotonic() - started)


def _manifest_fields(layout: Layout, settings: ConvertSettings, splits: Splits, src: str) -> dict[str, Any]:
    note = FIXED_NOTE.format(quality=FIX_QUALITY) if settings.fix_colors else CHANNEL_NOTE
    return dict(
        name=layout.name,
        classes=splits.classes,
        factors=[Factor(n, u, lo, hi) for n, u, lo, hi in layout.factors],
        recipe={"converter": layout.name, "views": settings.views, "objects_per_shard": settings.objects_per_shard,
                "order": "source order; object n of a split goes to shard n // objects_per_shard",
                "fix_colors": settings.fix_colors, "split_files": splits.files, "source": _public(src)},
        software=software_versions(),
        extra={"channel_order": "rgb" if settings.fix_colors else "bgr", "channel_note": note,
               "source_layout": "SYNSET/OBJECT_ID/image_{i}.jpg + latent_{i}.npy"},
    )


def _public(src: str) -> str:
    """The source as recorded: a URL as given, a local path by its name only (the manifest is shareable)."""
    from orbitset.manifests.download import _scheme

    return src if _scheme(src) not in ("", "file") else Path(src).name


def download_converted(
    name: str,
    out: str | os.PathLike,
    url: str | None = None,
    splits_from: str | None = None,
    settings: ConvertSettings | None = None,
    options: DownloadOptions = DownloadOptions(),
    progress: bool = True,
) -> ConvertReport:
    """`orbitset download NAME` for a registered source (kind "convert"): its split files (from the registry, each
    checked by checksum, or from `splits_from`), then `convert_source` of `url` (default: the registry's source).
    An `out` that already holds the finished dataset is kept as it is."""
    from orbitset.datasets.registry import lookup
    from orbitset.datasets.remote import fetch_small

    entry = lookup(name)
    if entry is None or entry.kind != "convert":
        raise DownloadError(f"{name!r} is not a dataset converted from a published source; see 'orbitset download --list'")
    settings = settings or ConvertSettings(layout=entry.layout)
    if (Path(out) / MANIFEST_NAME).exists():  # a finished run: nothing to fetch (check it with 'orbitset verify')
        manifest = load_manifest(out)
        if manifest.name != entry.layout:
            raise AssetError(f"{out} already holds another dataset ({manifest.name!r}); choose another --out")
        return ConvertReport(manifest, kept=len(manifest.shards))
    if splits_from is not None:
        files = read_split_dir(splits_from, options)
    else:
        files = {s.name: fetch_small(s.url, s.sha256, s.git_blob, options) for s in entry.splits}
    return convert_source(url or entry.source, out, settings, split_files=files, progress=progress, options=options)
