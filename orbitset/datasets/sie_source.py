"""Where 3DIEBench-layout objects come from: a gzip (or plain) tar read sequentially, a local folder tree, or an
fsspec tree (``file://``, ``memory://``, ``hf://datasets/...``, ``s3://``) holding loose files or archives.

Every source yields `SourceObject`s (one object folder's files as bytes) in source order: archive order for an
archive, sorted paths for a tree, archives of a tree one after the other in sorted order. Nothing is unpacked to disk.
An archive is read as a stream (`orbitset.datasets.tar_stream`) and an object is yielded as soon as a member of
another folder follows it. The layout's root may sit at any depth: objects are recognised by their
``SYNSET/OBJECT_ID/{image,latent}_i`` file names.
"""

from __future__ import annotations

import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator

from orbitset.datasets.sie_layout import SAFE_NAME, view_file
from orbitset.datasets.tar_stream import MAX_MEMBER, tar_members
from orbitset.errors import AssetError

if TYPE_CHECKING:
    from orbitset.manifests.download import DownloadOptions

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SPLIT_FILE = re.compile(r"^[A-Za-z0-9_-]+(_images|_labels)\.npy$")


@dataclass
class SourceObject:
    """One object folder: its files (name -> bytes), or None when the reader was told to skip it; `problem` says why
    the folder cannot be used (unsafe names, oversized or duplicated files) when it cannot."""

    synset: str
    object_id: str
    files: dict[str, bytes] | None
    problem: str | None = None


@dataclass
class ObjectSource:
    """An opened source: its objects (iterate once), what it found beside them, and how far reading got.

    `total_bytes` (None when unknown) and `read_bytes()` measure progress in source bytes (compressed bytes for an
    archive); `objects_total` is known for trees. `synsets` are the synset folders of a tree's loose objects (None for
    an archive or a tree of archives: not known before reading), `split_files` the split and label files found in the
    source (name -> bytes)."""

    objects: Iterator[SourceObject]
    read_bytes: Callable[[], int]
    total_bytes: int | None = None
    objects_total: int | None = None
    synsets: set[str] | None = None
    split_files: dict[str, bytes] = field(default_factory=dict)


# --- archives ----------------------------------------------------------------------------------------------------


def group_members(members: Iterable[tuple[str, bytes | None]], split_files: dict[str, bytes]) -> Iterator[SourceObject]:
    """Group consecutive members of one ``SYNSET/OBJECT_ID/`` folder into SourceObjects, yielded as soon as a member of
    another folder (or the end) follows. Split and label files seen on the way go into `split_files`."""
    seen: set[tuple[str, str]] = set()
    current: SourceObject | None = None
    for path, data in members:
        parsed = view_file(path)
        if parsed is None:
            name = path.rsplit("/", 1)[-1]
            if _SPLIT_FILE.match(name) and data is not None:
                split_files.setdefault(name, data)
            continue
        synset, object_id, name = parsed
        if current is None or (current.synset, current.object_id) != (synset, object_id):
            if current is not None:
                yield current
            current = SourceObject(synset, object_id, {})
            if not (SAFE_NAME.match(synset) and SAFE_NAME.match(object_id)):
                current.problem = "the folder names are not plain names ([A-Za-z0-9._-])"
            elif (synset, object_id) in seen:
                current.problem = "its files are split between two places of the source (not contiguous)"
            seen.add((synset, object_id))
        assert current.files is not None
        if data is None:
            current.problem = current.problem or f"{name} is larger than {MAX_MEMBER >> 20} MiB"
        elif name in current.files:
            current.problem = current.problem or f"{name} appears twice"
        else:
            current.files[name] = data
    if current is not None:
        yield current


class _Counting:
    """A file object that counts the bytes read from it (progress of a local archive)."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.position += len(data)
        return data

    def close(self) -> None:
        self._raw.close()


def open_archive(src: str, options: DownloadOptions | None = None) -> ObjectSource:
    """An archive at a local path, an http(s)/file URL (read with resume, `options`: DownloadOptions) or an fsspec URL."""
    from orbitset.datasets.remote import ResumableStream
    from orbitset.manifests.download import DownloadOptions

    scheme = _scheme(src)
    if scheme == "":
        path = Path(src)
        if not path.is_file():
            raise AssetError(f"{src}: no such archive")
        raw = _Counting(open(path, "rb"))
        total = path.stat().st_size
    else:
        stream = ResumableStream(src, options or DownloadOptions())
        raw, total = stream, stream.size  # type: ignore[assignment]
    split_files: dict[str, bytes] = {}

    def objects() -> Iterator[SourceObject]:
        try:
            yield from group_members(tar_members(raw, src, lambda: raw.position), split_files)
        finally:
            raw.close()

    return ObjectSource(objects(), read_bytes=lambda: raw.position, total_bytes=total, split_files=split_files)


# --- trees -------------------------------------------------------------------------------------------------------


def _scheme(src: str) -> str:
    from orbitset.manifests.download import _scheme as scheme_of

    return scheme_of(src)


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


@dataclass
class _Listing:
    """A tree's files: object folders in sorted order, archives, split files (path of each)."""

    folders: list[tuple[str, str, list[str]]]
    archives: list[str]
    split_files: dict[str, str]


def _list(paths: Iterable[str]) -> _Listing:
    folders: dict[tuple[str, str], list[str]] = {}
    archives: list[str] = []
    split_files: dict[str, str] = {}
    for path in sorted(paths):
        parsed = view_file(path)
        name = path.rsplit("/", 1)[-1]
        if parsed is not None:
            folders.setdefault(parsed[:2], []).append(path)
        elif is_archive(name):
            archives.append(path)
        elif _SPLIT_FILE.match(name):
            known = split_files.get(name)
            if known is None or known.count("/") > path.count("/"):  # the one nearest the root wins
                split_files[name] = path
    return _Listing([(s, o, files) for (s, o), files in sorted(folders.items())], archives, split_files)


def _prefetched(items: Iterable, load: Callable, jobs: int, ahead: int) -> Iterator:
    """`load(item)` for each item, in order, computed by `jobs` threads at most `ahead` items in advance."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(load, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def open_tree(src: str, skip: Callable[[str, str], bool] = lambda s, o: False, jobs: int = 8,
              options: DownloadOptions | None = None) -> ObjectSource:
    """A tree at a local path or fsspec URL: its loose object folders (read by `jobs` threads, ahead of use) then its
    archives. `skip(synset, object_id)` is asked once per loose folder, in order, before it is read: True yields it
    with ``files=None`` and reads nothing."""
    local = _scheme(src) in ("", "file")
    if local:
        from orbitset.manifests.download import _local_path

        root = _local_path(src)
        if not root.is_dir():
            raise AssetError(f"{src} is not a folder; point at a tree holding SYNSET/OBJECT_ID/image_i.jpg files")
        paths = [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]
        fs = None
    else:
        from orbitset._optional import require

        require("fsspec", f"reading {_scheme(src)}:// trees")
        if _scheme(src) == "hf":
            require("huggingface_hub", "reading Hugging Face Hub datasets (hf://)")
        import fsspec

        fs, root_path = fsspec.core.url_to_fs(src)
        if not fs.isdir(root_path):
            raise AssetError(f"{src} is not a folder of its file system; point at the root of the dataset")
        paths = fs.find(root_path)
    listing = _list(paths)
    read_total = [0]

    def read_paths(files: list[str]) -> dict[str, bytes]:
        if fs is None:
            return {path: Path(path).read_bytes() for path in files}
        return fs.cat(files, on_error="raise") if len(files) > 1 else {files[0]: fs.cat_file(files[0])}

    def load(folder: tuple[str, str, list[str]]) -> SourceObject:
        synset, object_id, files = folder
        obj = SourceObject(synset, object_id, None)
        if not (SAFE_NAME.match(synset) and SAFE_NAME.match(object_id)):
            obj.problem = "the folder names are not plain names ([A-Za-z0-9._-])"
            return obj
        try:
            contents = read_paths(files)
        except (OSError, ValueError) as exc:
            obj.problem = f"unreadable file ({exc})"
            return obj
        obj.files = {path.rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]: data for path, data in contents.items()}
        return obj

    def wanted(folder: tuple[str, str, list[str]]) -> tuple[tuple[str, str, list[str]], bool]:
        return folder, skip(folder[0], folder[1])

    def objects() -> Iterator[SourceObject]:
        decided = (wanted(folder) for folder in listing.folders)
        loaded = _prefetched(decided, lambda item: SourceObject(item[0][0], item[0][1], None) if item[1] else load(item[0]),
                             jobs, ahead=4 * jobs)
        for obj in loaded:
            read_total[0] += sum(map(len, (obj.files or {}).values()))
            yield obj
        for archive in listing.archives:
            url = archive if fs is None else fs.unstrip_protocol(archive)
            yield from open_archive(url, options).objects

    split_files = {name: read_paths([path])[path] for name, path in listing.split_files.items()}
    return ObjectSource(objects(), read_bytes=lambda: read_total[0], objects_total=len(listing.folders) or None,
                        synsets={s for s, _, _ in listing.folders} or None, split_files=split_files)


def open_source(src: str, skip: Callable[[str, str], bool] = lambda s, o: False, jobs: int = 8,
                options: DownloadOptions | None = None) -> ObjectSource:
    """Dispatch: an archive (by its name) or a tree (anything else), local or remote."""
    if is_archive(src.split("?", 1)[0]):
        return open_archive(src, options)
    return open_tree(src, skip, jobs, options)
