"""Tar shards of object samples: atomic deterministic writing and safe, indexed reading.

Writing: members are ``<key>.<field>`` with fixed metadata (mtime 0, mode 0444, uid/gid 0, no user names), so that the
same samples always give the same bytes and the same sha256. A shard is written to ``.<name>.partial`` and renamed
when complete, so a partial file is never taken for a shard.

Reading: a shard's member headers are scanned once into an index (key -> field -> offset and size), and a sample's
fields are then read by seeking straight to them: a loader that uses 2 of 50 views reads 2 images, not 50. Members
that are links, devices, directories, absolute or ``..`` paths, or pickle payloads make the shard unsafe and raise
ShardError naming it. Streams that cannot seek (remote shards) are read with `iter_samples`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

from orbitset.errors import ShardError

#: Field extensions that would be unpickled by generic decoders; a shard carrying one is refused.
PICKLE_EXTENSIONS = (".pyd", ".pickle", ".pkl", ".pth", ".pt", ".joblib")
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest records of one written shard (`name` is a plain file name)."""

    name: str
    bytes: int
    sha256: str
    objects: int
    views: int


class _HashingFile(io.RawIOBase):
    """A write-only file that forwards to `target` and keeps a running sha256 and size."""

    def __init__(self, target: IO[bytes]):
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self._target.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _count_views(sample: Mapping[str, Any]) -> int:
    return sum(1 for name in sample if name[:3].isdigit() and name.count(".") == 1)


def write_shard(path: str | os.PathLike, samples: Iterable[Mapping[str, Any]]) -> ShardInfo:
    """Write `samples` (each ``{"__key__": key, field: bytes}``) to the tar `path` atomically; return its ShardInfo.

    Fields are written in sorted order. The file appears under its final name only once it is complete and synced.
    """
    path = Path(path)
    partial = path.with_name("." + path.name + PARTIAL_SUFFIX)
    objects = views = 0
    try:
        with open(partial, "wb") as raw:
            hashing = _HashingFile(raw)
            with tarfile.open(fileobj=hashing, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for sample in samples:
                    key = sample["__key__"]
                    for name in sorted(n for n in sample if not n.startswith("__")):
                        data = sample[name]
                        if isinstance(data, str):
                            data = data.encode("utf-8")
                        info = tarfile.TarInfo(f"{key}.{name}")
                        info.size, info.mtime, info.mode = len(data), 0, 0o444
                        tar.addfile(info, io.BytesIO(data))
                    objects += 1
                    views += _count_views(sample)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ShardInfo(name=path.name, bytes=hashing.size, sha256=hashing.digest.hexdigest(), objects=objects, views=views)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def split_member_name(name: str, shard: str) -> tuple[str, str]:
    """``key.field`` -> (key, field), cut at the first dot as webdataset does; refuse unsafe names and payloads.

    orbitset shards are flat: a member name with a folder, an absolute path or ``..`` is refused."""
    if "/" in name or "\\" in name or name.startswith(".."):
        raise ShardError(f"shard {shard}: member {name!r} has a path (absolute, '..' or a folder); refusing an unsafe shard")
    key, _, field = name.partition(".")
    if not key or not field:
        raise ShardError(f"shard {shard}: member {name!r} is not 'key.field'; not an orbitset/webdataset sample")
    if ("." + field.lower()).endswith(PICKLE_EXTENSIONS):
        raise ShardError(f"shard {shard}: member {name!r} is a pickle payload; orbitset never unpickles shard data")
    return key, field


def _check_member(member: tarfile.TarInfo, shard: str) -> None:
    if not member.isreg():
        kind = "link" if (member.issym() or member.islnk()) else "directory" if member.isdir() else "special file"
        raise ShardError(f"shard {shard}: member {member.name!r} is a {kind}; only regular files are allowed")


@dataclass(frozen=True)
class MemberRef:
    """Byte range of one field's data inside a shard file."""

    offset: int
    size: int


def index_shard(path: str | os.PathLike) -> dict[str, dict[str, MemberRef]]:
    """Scan a shard's headers once: key -> field -> MemberRef, keys in file order. Raises ShardError if unsafe or truncated."""
    path = Path(path)
    shard = path.name
    try:
        file_size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ShardError(f"shard {path} does not exist; re-download or re-render it") from exc
    index: dict[str, dict[str, MemberRef]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                _check_member(member, shard)
                key, field = split_member_name(member.name, shard)
                if member.offset_data + member.size > file_size:
                    raise ShardError(f"shard {shard} is truncated inside member {member.name!r}; re-download or re-render it")
                index.setdefault(key, {})[field] = MemberRef(member.offset_data, member.size)
    except tarfile.TarError as exc:
        raise ShardError(f"shard {shard} is not a readable tar file ({exc}); it may be truncated or corrupt") from exc
    return index


class ShardReader:
    """Random access to the samples of one local shard; decodes nothing. Use as a context manager or call close()."""

    def __init__(self, path: str | os.PathLike, index: dict[str, dict[str, MemberRef]] | None = None):
        """Open `path`; `index` (from `index_shard`, e.g. built once in another process) skips the header scan."""
        self.path = Path(path)
        self.index = index_shard(self.path) if index is None else index
        self._file: IO[bytes] | None = None

    def keys(self) -> list[str]:
        return list(self.index)

    def fields(self, key: str) -> list[str]:
        return list(self._entry(key))

    def _entry(self, key: str) -> dict[str, MemberRef]:
        try:
            return self.index[key]
        except KeyError:
            raise ShardError(f"shard {self.path.name} has no sample with key {key!r}") from None

    def read(self, key: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """``{"__key__": key, "__shard__": name, field: bytes}`` for the given fields (all when None)."""
        entry = self._entry(key)
        wanted = list(entry) if fields is None else list(fields)
        out: dict[str, Any] = {"__key__": key, "__shard__": self.path.name}
        for field in wanted:
            out[field] = self.read_field(key, field)
        return out

    def read_field(self, key: str, field: str) -> bytes:
        """The bytes of one field (one pread, no dict)."""
        ref = self._entry(key).get(field)
        if ref is None:
            raise ShardError(f"shard {self.path.name} sample {key!r} has no field {field!r}")
        return self.read_member(ref, key, field)

    def read_member(self, ref: MemberRef, key: str, field: str) -> bytes:
        """The bytes at `ref` of this shard (the loaders' per-view read, from an index entry they hold: one pread);
        `key` and `field` name it in errors."""
        if self._file is None:
            self._file = open(self.path, "rb")
        data = os.pread(self._file.fileno(), ref.size, ref.offset)
        if len(data) != ref.size:
            raise ShardError(f"shard {self.path.name} sample {key!r} field {field!r} is truncated")
        return data

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for key in self.index:
            yield self.read(key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_samples(stream: IO[bytes], shard: str) -> Iterator[dict[str, Any]]:
    """Stream the samples of a tar read sequentially (e.g. over HTTP), grouping consecutive members by key.

    Applies the same safety checks as `index_shard`; ShardError names `shard` and the key on any problem.
    """
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                _check_member(member, shard)
                key, field = split_member_name(member.name, shard)
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise ShardError(f"shard {shard} is truncated inside sample {key!r} field {field!r}")
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__shard__": shard}
                current[field] = data
    except tarfile.TarError as exc:
        raise ShardError(f"shard {shard} is not a readable tar stream ({exc}); it may be truncated or corrupt") from exc
    if current is not None:
        yield current
