"""Check a dataset folder against its manifest: every shard's size and sha256, and (deep) every sample inside.

`verify_dataset` never raises on a bad shard: it returns a `VerifyReport` with one `ShardCheck` per shard (and one
per unlisted ``*.tar`` in the folder), which the CLI prints as a table and loaders turn into an error with
`VerifyReport.raise_for_problems`. A deep check reads every sample through `orbitset.shard_scan.scan_shard` (which
refuses links, paths, devices and pickle payloads) and `orbitset.schema.decode` (which never unpickles), and compares
the object and view counts with the manifest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from orbitset.errors import OrbitsetError, SchemaError, ShardError
from orbitset.manifests.model import Manifest, ShardEntry, load_manifest, manifest_path
from orbitset.schema import ObjectSample, decode
from orbitset.integrity import integrity_problem
from orbitset.shard_scan import scan_shard

OK, MISSING, SIZE, CHECKSUM, CONTENT, EXTRA = "ok", "missing", "size", "sha256", "content", "extra"


@dataclass(frozen=True)
class ShardCheck:
    """The verdict on one shard: `status` is one of ok, missing, size, sha256, content, extra; `detail` says why."""

    name: str
    split: str
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass
class VerifyReport:
    """All shard verdicts of one dataset folder (manifest order, then unlisted shards by name)."""

    directory: Path
    manifest: Manifest
    checks: list[ShardCheck] = field(default_factory=list)
    deep: bool = False

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> list[ShardCheck]:
        return [check for check in self.checks if not check.ok]

    def table(self) -> str:
        """A plain-text table: shard, split, status, detail."""
        rows = [("shard", "split", "status", "detail")] + [(c.name, c.split, c.status, c.detail) for c in self.checks]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows
        ).rstrip()

    def summary(self) -> str:
        kind = "deep" if self.deep else "size+sha256"
        if self.ok:
            totals = self.manifest.totals()
            return f"{self.directory}: all {totals['shards']} shards ok ({kind}; {totals['objects']} objects, {totals['views']} views)"
        named = ", ".join(f"{c.name} ({c.status})" for c in self.problems)
        return f"{self.directory}: {len(self.problems)} bad shard(s): {named}"

    def raise_for_problems(self) -> None:
        """ShardError naming every bad, missing or unlisted shard (and how to fix it); nothing if all are ok."""
        if not self.ok:
            raise ShardError(
                f"{self.summary()}; re-download them with 'orbitset download SOURCE --out {self.directory}' (SOURCE: the "
                "dataset's name or manifest URL; complete shards are kept), or re-render "
                "or re-convert the dataset; remove unlisted shards or rebuild the manifest"
            )


def decoded_samples(path: str | os.PathLike) -> Iterator[ObjectSample]:
    """Every sample of a local shard, read front to back by `orbitset.shard_scan.scan_shard` (unsafe members refused;
    one sample in memory at a time) and decoded and validated by `orbitset.schema.decode` (nothing unpickled); any
    problem is a ShardError naming the shard."""
    path = Path(path)
    for scanned in scan_shard(path):
        try:
            sample = decode({"__key__": scanned.key, "__shard__": path.name, **scanned.data})
        except SchemaError as exc:
            raise ShardError(f"shard {path.name}: {exc}") from exc
        yield sample


def _deep_check(path: Path, entry: ShardEntry, manifest: Manifest) -> str:
    """'' if every sample decodes, validates and the counts match the manifest; otherwise what is wrong."""
    objects = views = 0
    factors = len(manifest.factors)
    for sample in decoded_samples(path):
        key = sample.key
        if factors and sample.latents.shape[1] != factors:
            return f"sample {key!r} has {sample.latents.shape[1]} factor columns, the manifest lists {factors}"
        index, name = sample.meta["class_index"], sample.meta["class_name"]
        if manifest.classes and (index >= len(manifest.classes) or manifest.classes[index] != name):
            return f"sample {key!r} has class {name!r} index {index}, which is not that class in the manifest"
        objects += 1
        views += sample.num_views
    if (objects, views) != (entry.objects, entry.views):
        return f"holds {objects} objects / {views} views, the manifest records {entry.objects} / {entry.views}"
    return ""


def check_shard(directory: Path, entry: ShardEntry, manifest: Manifest, deep: bool = False, hashes: bool = True) -> ShardCheck:
    """Verdict on one listed shard: existence, size, sha256 (when `hashes`), then samples and counts (when `deep`)."""
    path = directory / entry.name

    def verdict(status: str, detail: str = "") -> ShardCheck:
        return ShardCheck(entry.name, entry.split, status, detail)

    if not path.is_file():
        return verdict(MISSING, "not in the folder")
    problem = integrity_problem(path, entry.bytes, None)
    if problem is not None:
        return verdict(SIZE, problem)
    problem = integrity_problem(path, None, entry.sha256) if hashes else None
    if problem is not None:
        return verdict(CHECKSUM, problem)
    if deep:
        try:
            problem = _deep_check(path, entry, manifest)
        except OrbitsetError as exc:
            problem = str(exc)
        if problem:
            return verdict(CONTENT, problem)
    return verdict(OK)


def unlisted_shards(directory: Path, manifest: Manifest) -> list[str]:
    """Names of ``*.tar`` files in `directory` that the manifest does not list (sorted)."""
    listed = {entry.name for entry in manifest.shards}
    return sorted(p.name for p in directory.glob("*.tar") if p.name not in listed)


def verify_dataset(
    path: str | os.PathLike,
    deep: bool = False,
    hashes: bool = True,
    split: str | None = None,
    jobs: int | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Check the dataset at `path` (a folder with ``manifest.json``, or the manifest file itself) against its manifest.

    `hashes=False` checks sizes only (fast, for loaders that re-check on every open); `deep` also decodes every sample;
    `split` limits the check to that split's shards (unlisted shards are always reported). Shards are checked by
    `jobs` threads (hashing releases the GIL). Raises ManifestError only if the manifest itself is missing or invalid.
    """
    file = manifest_path(path)
    manifest = load_manifest(file)
    directory = file.parent
    entries = manifest.shards_for(split)
    jobs = jobs or min(4, os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(e.bytes for e in entries), unit="B", unit_scale=True, desc="verify", leave=False)

    def run(entry: ShardEntry) -> ShardCheck:
        check = check_shard(directory, entry, manifest, deep=deep, hashes=hashes)
        if bar is not None:
            bar.update(entry.bytes)
        return check

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            checks = list(pool.map(run, entries))
    finally:
        if bar is not None:
            bar.close()
    checks += [ShardCheck(name, "-", EXTRA, "not listed in the manifest") for name in unlisted_shards(directory, manifest)]
    return VerifyReport(directory=directory, manifest=manifest, checks=checks, deep=deep)
