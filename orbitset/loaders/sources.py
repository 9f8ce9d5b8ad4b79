"""Where a loader's shards come from, and the checks they pass before a loader reads them.

A source is a dataset folder (holding ``manifest.json``), a manifest file or URL, or a list of shard paths/URLs.
Shards listed in a manifest are checked against it before use: their size always, their sha256 when the loader is
asked to (``verify="sha256"``) and whenever a remote shard is first downloaded into the cache. Remote shards
(``http(s)://`` with the standard library, other schemes through fsspec) are downloaded once into the cache folder
(``$ORBITSET_CACHE`` or ``~/.cache/orbitset/shards``; `orbitset.loaders.cache`, optionally bounded in size) by the
process that first reads them, and then read with seeks like local ones; shards a manifest lists are fetched by
`orbitset.manifests.download.fetch_file` (resumed, retried, verified before they appear), bare shard URLs without a
manifest by a plain copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from orbitset.errors import DownloadError, ManifestError, ShardError, UsageError
from orbitset.integrity import check_integrity, integrity_problem
from orbitset.loaders.cache import ShardCache
from orbitset.manifests.model import MANIFEST_NAME, Manifest, ShardEntry, load_manifest

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
VERIFY_MODES = ("size", "sha256", "none")


@dataclass(frozen=True)
class ShardRef:
    """One shard a loader reads: its file name, where it lives (path or URL) and, when a manifest lists it, the
    manifest's entry (None for shards named directly: nothing to check them against)."""

    name: str
    location: str
    entry: ShardEntry | None = None

    @property
    def remote(self) -> bool:
        return is_url(self.location)

    @property
    def bytes(self) -> int | None:
        return None if self.entry is None else self.entry.bytes

    @property
    def sha256(self) -> str | None:
        return None if self.entry is None else self.entry.sha256

    @property
    def objects(self) -> int | None:
        return None if self.entry is None else self.entry.objects


def is_url(location: str) -> bool:
    """True for ``scheme://...`` locations other than ``file://``."""
    scheme = urllib.parse.urlparse(str(location)).scheme
    return len(scheme) > 1 and scheme != "file"


def _local_path(location: str | os.PathLike) -> Path:
    text = str(location)
    return Path(urllib.parse.urlparse(text).path) if text.startswith("file://") else Path(text)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name if is_url(base) else str(Path(base) / name)


def expand_shards(locations: Sequence[str | os.PathLike]) -> list[str]:
    """The locations with webdataset's brace notation expanded, in order: ``train-{000000..000002}.tar`` is
    ``train-000000.tar``, ``train-000001.tar``, ``train-000002.tar`` (``{a,b}`` lists alternatives)."""
    from braceexpand import braceexpand

    return [name for location in locations for name in braceexpand(str(location))]


def resolve_source(source: Source, split: str | None) -> tuple[list[ShardRef], Manifest | None]:
    """The shards of `split` in `source` and the manifest (None for a plain list of shards).

    With a manifest, ``split=None`` means "train" when the dataset has that split, else every shard. A list of shards
    has no splits: `split` must then be None. Shard paths and URLs may use webdataset's brace notation
    (`expand_shards`).
    """
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".tar"):
        source = [source]
    if isinstance(source, (list, tuple)):
        if split is not None:
            raise ManifestError(f"split={split!r} needs a dataset folder or manifest; a list of shards has no splits (pass split=None)")
        if not source:
            raise ManifestError("the list of shards is empty; pass at least one shard path or URL")
        refs = []
        for location in expand_shards(source):
            name = urllib.parse.urlparse(location).path.rsplit("/", 1)[-1] if is_url(location) else _local_path(location).name
            refs.append(ShardRef(name=name, location=location))
        return refs, None
    text = str(source)
    if is_url(text):
        manifest_url = text if text.endswith(".json") else _join(text, MANIFEST_NAME)
        base = manifest_url.rsplit("/", 1)[0]
        manifest = Manifest.from_json(json.loads(_fetch_bytes(manifest_url).decode("utf-8")), source=manifest_url)
    else:
        path = _local_path(text)
        manifest = load_manifest(path)
        base = str(path.parent if path.suffix == ".json" else path)
    if split is None and "train" in manifest.splits:
        split = "train"
    entries = manifest.shards_for(split)
    refs = [ShardRef(e.name, _join(base, e.name), e) for e in entries]
    return refs, manifest


def cache_dir() -> Path:
    """Folder of downloaded shards: ``$ORBITSET_CACHE`` or ``~/.cache/orbitset/shards``."""
    root = os.environ.get("ORBITSET_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "orbitset" / "shards"


def _fetch_bytes(url: str) -> bytes:
    with _open_url(url) as stream:
        return stream.read()


def _open_url(url: str):
    try:
        if urllib.parse.urlparse(url).scheme in ("http", "https"):
            return urllib.request.urlopen(url, timeout=60)
        from orbitset._optional import require

        fsspec = require("fsspec", f"reading {url}")
        return fsspec.open(url, "rb").open()
    except OSError as exc:
        raise DownloadError(f"cannot read {url} ({exc}); check the URL and your connection") from exc


def _check(ref: ShardRef, path: Path, verify: str) -> None:
    """`path` checked against `ref`'s manifest record as `verify` asks (see module docstring)."""
    if verify != "none":
        check_integrity(path, ref.bytes, ref.sha256 if verify == "sha256" else None)


def _cache_tag(ref: ShardRef) -> str:
    """The prefix of `ref`'s files in the cache: from its sha256 when known, else from its location."""
    return ref.sha256[:16] if ref.sha256 else hashlib.sha256(ref.location.encode()).hexdigest()[:16]


def localise_index(ref: ShardRef, shard: Path, cache: ShardCache | None = None) -> Path:
    """A local path to the index file `ref`'s manifest entry lists: beside the local shard `shard`, or for a remote
    shard fetched once into `cache` (default: the unbounded `cache_dir()`), verified by size and sha256."""
    record = ref.entry.index
    if not ref.remote:
        return shard.with_name(record.name)
    url = ref.location.rsplit("/", 1)[0] + "/" + record.name
    cache = cache or ShardCache(cache_dir())
    try:
        return cache.fetch(f"{_cache_tag(ref)}-{record.name}", record.bytes, record.sha256, [url])
    except DownloadError as exc:
        raise ShardError(f"the index of shard {ref.name} could not be fetched from {url}: {exc}") from exc


def localise(ref: ShardRef, verify: str, cache: ShardCache | None = None) -> Path:
    """A local path to `ref`, checked against the manifest (see module docstring): a remote shard is fetched into
    `cache` (default: the unbounded `cache_dir()`) unless it is there, and fetched again if its cached copy is
    damaged."""
    if verify not in VERIFY_MODES:
        raise UsageError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    if not ref.remote:
        path = _local_path(ref.location)
        _check(ref, path, verify)
        return path
    cache = cache or ShardCache(cache_dir())
    name = f"{_cache_tag(ref)}-{ref.name}"
    for attempt in range(2):
        in_place = cache.cached(name, ref.bytes) is not None  # else fetched now, its size and sha256 checked on arrival
        try:
            path = cache.fetch(name, ref.bytes, ref.sha256, [ref.location])
        except DownloadError as exc:
            raise ShardError(f"shard {ref.name} could not be fetched from {ref.location}: {exc}") from exc
        if verify != "sha256" or not in_place or integrity_problem(path, ref.bytes, ref.sha256) is None:
            return path
        path.unlink(missing_ok=True)  # damaged in the cache after it was fetched and verified: fetch it again
    check_integrity(path, ref.bytes, ref.sha256)
    return path
