"""Tar shards of object samples: the one place shards and manifests are written, and safe, indexed reading.

Writing (`ShardWriter`, `write_shard`): members are ``<key>.<field>`` with fixed metadata (mtime 0, mode 0444, uid/gid
0, no user names), so that the same samples always give the same bytes and the same sha256, which is computed while
writing. Headers are built here, byte for byte what tarfile writes in PAX format (tarfile itself builds only the pax
header of a name over 100 bytes or not ASCII). A shard is written to ``.<name>.partial`` and renamed when complete, so
a partial file is never taken for a shard; a writer has at most one partial shard open. Shards are named
``<split>-NNNNNN.tar``; beside each finished shard a sidecar ``<split>-NNNNNN.json`` (written atomically after the
tar) records its manifest entry, the object keys it was planned for, the objects that failed and the caller's identity
(recipe hash, seed, ...), which is what a rerun needs to keep complete shards. The manifest is written last, from the
sidecar records.

Index files: when a shard is finished, before it is renamed into place, its members' offsets are written beside it
(``train-000007.oidx``, orbitset's, and ``train-000007.idx``, DALI's; `orbitset.shard_index`), and its manifest entry
lists both with size and sha256; so a complete shard always has its index files.

Reading: a shard's offsets come from its index file (read and checked against the shard, never scanned), or for a
shard written before index files existed, from one scan of its headers; a sample's fields are then read by seeking
straight to them: a loader that uses 2 of 50 views reads 2 images, not 50. Members
that are links, devices, directories, absolute or ``..`` paths, or pickle payloads make the shard unsafe and raise
ShardError naming it. Streams that cannot seek (remote shards) are read with `iter_samples`.

Writing and reading are one file because they share one member format (flat ``key.field`` names, what counts as a
view, which payloads are refused); apart, that format would be written down twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

from orbitset.errors import ShardError, UsageError
from orbitset.manifests.model import Failure, Manifest, ShardEntry, write_json_atomic, write_manifest
from orbitset.schema import is_view_field
from orbitset.shard_index import MemberRef, ShardOffsets, index_beside, read_index, write_index_files

#: Field extensions that would be unpickled by generic decoders; a shard carrying one is refused.
PICKLE_EXTENSIONS = (".pyd", ".pickle", ".pkl", ".pth", ".pt", ".joblib")
PARTIAL_SUFFIX = ".partial"
#: Splits in manifest order; other splits follow by name.
SPLIT_ORDER = ("train", "val")


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` (from 0) of `split`: ``train-000007.tar``."""
    return f"{split}-{index:06d}.tar"


def sidecar_name(shard: str) -> str:
    """File name of the sidecar record of shard file `shard`: ``train-000007.json``."""
    return shard[: -len(".tar")] + ".json"


def _shard_order(name: str) -> tuple[int, str, str]:
    split, _, number = name[: -len(".tar")].rpartition("-")
    rank = SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)
    return rank, split, number


_BLOCK = 512
#: A tar is padded with zeros to a multiple of this (20 blocks), as tarfile and GNU tar write it.
_RECORD = 20 * _BLOCK
_END_OF_ARCHIVE = bytes(2 * _BLOCK)
_NAME_FIELD = 100
#: Sizes from here on do not fit the 11 octal digits of a ustar size field.
_USTAR_MAX_SIZE = 8**11
# A ustar header of a regular file with the fixed metadata, around its name, size and checksum fields:
# mode 0444, uid 0, gid 0 | size | mtime 0 | checksum | type "0", no link name, magic "ustar\0" version "00",
# no user or group names, no device numbers, no name prefix.
_IDS = b"0000444\0" b"0000000\0" b"0000000\0"
_MTIME = b"00000000000\0"
_TAIL = b"0" + bytes(100) + b"ustar\x0000" + bytes(32 + 32 + 8 + 8 + 155 + 12)
#: Checksum of the fixed fields, the checksum field counting as eight spaces.
_FIXED_CHECKSUM = sum(_IDS) + sum(_MTIME) + 8 * ord(" ") + sum(_TAIL)


def _member_header(name: str, size: int) -> bytes:
    """The header block(s) of regular file `name` of `size` bytes with the fixed metadata.

    Byte for byte what tarfile writes in PAX format: a plain ustar block for an ASCII name of at most 100 bytes (and
    a size under 8 GiB, always for orbitset fields), built here directly; otherwise tarfile's own pax header."""
    if name.isascii() and len(name) <= _NAME_FIELD and size < _USTAR_MAX_SIZE:
        encoded, size_field = name.encode("ascii"), b"%011o\0" % size
        checksum = _FIXED_CHECKSUM + sum(encoded) + sum(size_field)
        return encoded.ljust(_NAME_FIELD, b"\0") + _IDS + size_field + _MTIME + b"%06o\0 " % checksum + _TAIL
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


class _OpenShard:
    """One shard being written to its partial file, with a running sha256 and size; `finish` ends the tar, syncs and
    renames it, `abort` deletes it. Each sample is written (and hashed) with one call."""

    def __init__(self, path: Path, split: str):
        self.path, self.split = path, split
        self.partial = path.with_name("." + path.name + PARTIAL_SUFFIX)
        self.objects = self.views = 0
        #: (key, field, header offset, data offset, size) of every member written, for the shard's index files.
        self.members: list[tuple[str, str, int, int, int]] = []
        self._raw = open(self.partial, "wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def _write(self, data: bytes) -> None:
        self._raw.write(data)
        self._digest.update(data)
        self._size += len(data)

    def add(self, sample: Mapping[str, Any]) -> None:
        key = sample["__key__"]
        parts: list[bytes] = []
        position = self._size
        for name in sorted(n for n in sample if not n.startswith("__")):
            data = sample[name]
            if isinstance(data, str):
                data = data.encode("utf-8")
            member = f"{key}.{name}"
            split_member_name(member, self.path.name)  # refuse what a reader would refuse
            header = _member_header(member, len(data))
            self.members.append((key, name, position, position + len(header), len(data)))
            parts += (header, data, bytes(-len(data) % _BLOCK))
            position += len(header) + len(data) + len(parts[-1])
            self.views += is_view_field(name)
        self._write(b"".join(parts))
        self.objects += 1

    def finish(self) -> ShardEntry:
        try:
            self._write(_END_OF_ARCHIVE + bytes(-(self._size + len(_END_OF_ARCHIVE)) % _RECORD))
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
            sha256 = self._digest.hexdigest()
            offsets = ShardOffsets.from_members(self.path.name, self._size, sha256, self.members)
            index, dali = write_index_files(offsets, self.path.parent)
            os.replace(self.partial, self.path)
        except BaseException:
            self.abort()
            raise
        return ShardEntry(self.path.name, self._size, sha256, self.objects, self.views, self.split, index, dali)

    def abort(self) -> None:
        self._raw.close()
        self.partial.unlink(missing_ok=True)


def write_shard(path: str | os.PathLike, samples: Iterable[Mapping[str, Any]], split: str = "") -> ShardEntry:
    """Write `samples` (each ``{"__key__": key, field: bytes}``) to the tar `path` atomically; return its entry.

    Fields are written in sorted order. The file appears under its final name only once it is complete and synced;
    on any error the partial file is deleted. `split` is recorded in the returned entry. Writes no sidecar: use
    `ShardWriter` (or pass the entry to `ShardWriter.record`) for datasets.
    """
    shard = _OpenShard(Path(path), split)
    try:
        for sample in samples:
            shard.add(sample)
    except BaseException:
        shard.abort()
        raise
    return shard.finish()


@dataclass
class ShardRecord:
    """A finished shard as its sidecar stores it: the manifest entry (None when every object failed), the keys the
    shard was written for (in sample order, failed ones included), the failures, the writer's identity, and
    `warnings`: JSON-able notes per key of objects that were written but deserve a look (e.g. framing counts)."""

    name: str
    split: str
    keys: list[str]
    entry: ShardEntry | None
    failures: list[Failure] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)
    warnings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        info = None if self.entry is None else {k: v for k, v in self.entry.to_json().items() if k != "split"}
        failures = [asdict(f) for f in self.failures]
        return {**self.identity, "shard": self.name, "split": self.split, "keys": self.keys, "info": info,
                "failures": failures, "warnings": self.warnings}


class ShardWriter:
    """Writes one dataset's shards, their sidecars and, last, its manifest into `directory`.

    `identity` (JSON-able, e.g. ``{"recipe_hash": ..., "seed": ...}``) is stored in every sidecar; a sidecar left by a
    run with another identity or other keys makes `completed`/`resume` raise ShardError instead of mixing datasets.
    Creating a writer removes stale ``.*.partial`` files (a killed run's leftovers): create one per folder and run.

    Two ways to fill it, both ending with `write_manifest`:

    - whole shards (render: the plan names every shard): `completed(name, split, keys)` returns the record of a shard
      a previous run finished (None: write it), `write_shard(name, split, keys, samples, failures)` writes one, and
      `record(entry, keys, failures)` adopts a shard written by `write_shard` elsewhere (another process);
    - streaming (convert: objects arrive one by one): `resume(split)` keeps the complete shards of `split` a previous
      run wrote and returns their keys (skip those objects), then `add(split, key, sample)` / `add_failure(split, key,
      reason)` append to the open shard, a new one starting every `objects_per_shard` objects (failed ones count), and
      `close()` finishes the open shard.
    """

    def __init__(self, directory: str | os.PathLike, *, objects_per_shard: int = 64, identity: Mapping[str, Any] | None = None):
        if isinstance(objects_per_shard, bool) or not isinstance(objects_per_shard, int) or objects_per_shard < 1:
            raise UsageError(f"objects_per_shard must be an integer of at least 1, got {objects_per_shard!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.objects_per_shard = objects_per_shard
        self.identity = dict(identity or {})
        self.records: dict[str, ShardRecord] = {}
        self._open: _OpenShard | None = None
        self._open_keys: list[str] = []
        self._open_failures: list[Failure] = []
        self._next_index: dict[str, int] = {}
        for path in self.directory.glob(".*" + PARTIAL_SUFFIX):
            path.unlink(missing_ok=True)

    # -- whole shards -------------------------------------------------------------------------------------------
    def completed(self, name: str, split: str, keys: Sequence[str]) -> ShardRecord | None:
        """The record of shard `name` if a previous run finished it for these `keys` (it is then kept), else None.

        Complete means: its sidecar exists and its tar has the recorded size (or every object failed). ShardError if
        the sidecar belongs to another dataset (other identity, split or keys)."""
        data = self._read_sidecar(name)
        if data is None:
            return None
        expected = {**self.identity, "shard": name, "split": split, "keys": list(keys)}
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in expected.items()):
            raise ShardError(
                f"{self.directory} already holds shard {name} of a different dataset (other recipe, seed, objects or "
                "shard size); write into an empty folder, or rerun with the same options to resume"
            )
        info = data.get("info")
        entry = None if info is None else ShardEntry.from_json({**info, "split": split})
        if entry is not None:
            files = [(name, entry.bytes)] + [(f.name, f.bytes) for f in (entry.index, entry.dali_index) if f is not None]
            if any(not (self.directory / file).is_file() or (self.directory / file).stat().st_size != size
                   for file, size in files):
                return None
        failures = [Failure(**f) for f in data.get("failures", [])]
        record = ShardRecord(name, split, list(keys), entry, failures, dict(self.identity), dict(data.get("warnings") or {}))
        self.records[name] = record
        return record

    def write_shard(self, name: str, split: str, keys: Sequence[str], samples: Sequence[Mapping[str, Any]],
                    failures: Iterable[Failure] = (), warnings: Mapping[str, Any] | None = None) -> ShardRecord:
        """Write shard `name` of `split` from `samples` (no tar when there are none), then its sidecar; return the record."""
        self._check_closed()
        entry = write_shard(self.directory / name, samples, split) if samples else None
        return self._keep(ShardRecord(name, split, list(keys), entry, list(failures), dict(self.identity), dict(warnings or {})))

    def record(self, entry: ShardEntry, keys: Sequence[str], failures: Iterable[Failure] = ()) -> ShardRecord:
        """Adopt shard `entry` written into this folder by `write_shard` (e.g. in a worker process): write its sidecar."""
        return self._keep(ShardRecord(entry.name, entry.split, list(keys), entry, list(failures), dict(self.identity)))

    # -- streaming ----------------------------------------------------------------------------------------------
    def resume(self, split: str) -> list[str]:
        """Keep the complete shards ``<split>-000000``, ``-000001``, ... a previous run wrote and return their keys in
        order (the objects to skip); the next shard of `split` is numbered after them."""
        keys: list[str] = []
        index = 0
        while True:
            name = shard_name(split, index)
            data = self._read_sidecar(name)
            recorded = data.get("keys") if data is not None else None
            if not isinstance(recorded, list) or self.completed(name, split, recorded) is None:
                break
            keys.extend(recorded)
            index += 1
        self._next_index[split] = index
        return keys

    def add(self, split: str, key: str, sample: Mapping[str, Any]) -> None:
        """Append `sample` (``{"__key__": key, field: bytes}``) to the open shard of `split`."""
        self._shard_for(split).add(sample)
        self._open_keys.append(key)
        self._roll()

    def add_failure(self, split: str, key: str, reason: str) -> None:
        """Record that object `key` of `split` failed (`reason`); it takes its place in the open shard's count."""
        self._shard_for(split)
        self._open_keys.append(key)
        self._open_failures.append(Failure(key, reason))
        self._roll()

    def close(self) -> None:
        """Finish the open shard, if any (an all-failed shard leaves no tar, only its sidecar)."""
        shard, self._open = self._open, None
        if shard is None:
            return
        entry = shard.finish() if shard.objects else None
        if entry is None:
            shard.abort()
        keys, failures = self._open_keys, self._open_failures
        self._open_keys, self._open_failures = [], []
        self._keep(ShardRecord(shard.path.name, shard.split, keys, entry, failures, dict(self.identity)))

    def abort(self) -> None:
        """Drop the open shard's partial file (finished shards stay)."""
        if self._open is not None:
            self._open.abort()
            self._open = None
            self._open_keys, self._open_failures = [], []

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # -- manifest -----------------------------------------------------------------------------------------------
    def entries(self) -> list[ShardEntry]:
        """Entries of the shards kept or written so far, ``train`` first, then ``val``, then other splits by name."""
        return [self.records[n].entry for n in sorted(self.records, key=_shard_order) if self.records[n].entry is not None]

    def write_manifest(self, *, failures: Iterable[Failure] = (), **fields: Any) -> Manifest:
        """Close the open shard, then write ``manifest.json`` atomically and return it.

        Its shards are `entries()`; its failures are `failures` followed by those of the shards. `fields` are the
        other `Manifest` fields (name, classes, factors, recipe, seed, software, extra, ...)."""
        self.close()
        names = sorted(self.records, key=_shard_order)
        failed = list(failures) + [f for n in names for f in self.records[n].failures]
        manifest = Manifest(shards=self.entries(), failures=failed, **fields)
        write_manifest(manifest, self.directory)
        return manifest

    # -- internals ----------------------------------------------------------------------------------------------
    def _read_sidecar(self, name: str) -> dict[str, Any] | None:
        """The sidecar of shard `name` as a dict; None when absent or unreadable (sidecars are written atomically, so
        an unreadable one was damaged after the fact: its shard is written again)."""
        try:
            data = json.loads((self.directory / sidecar_name(name)).read_text(encoding="utf-8"))
        except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _keep(self, record: ShardRecord) -> ShardRecord:
        write_json_atomic(self.directory / sidecar_name(record.name), record.to_json())
        self.records[record.name] = record
        return record

    def _check_closed(self) -> None:
        if self._open is not None:
            raise ShardError(f"shard {self._open.path.name} is still open; close() it before writing a whole shard")

    def _shard_for(self, split: str) -> _OpenShard:
        if self._open is not None and self._open.split != split:
            self.close()
        if self._open is None:
            index = self._next_index.get(split, 0)
            self._next_index[split] = index + 1
            self._open = _OpenShard(self.directory / shard_name(split, index), split)
        return self._open

    def _roll(self) -> None:
        if len(self._open_keys) >= self.objects_per_shard:
            self.close()


def record_index_files(directory: str | os.PathLike, entry: ShardEntry) -> None:
    """Write `entry` (with its index files) into the sidecar of its shard in `directory`, when it has one, so that a
    writer resuming there keeps listing them (`orbitset index` adds index files to datasets written before them)."""
    path = Path(directory) / sidecar_name(entry.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return
    if isinstance(data, dict) and isinstance(data.get("info"), dict):
        data["info"] = {k: v for k, v in entry.to_json().items() if k != "split"}
        write_json_atomic(path, data)


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


def scan_offsets(path: str | os.PathLike, sha256: str = "") -> ShardOffsets:
    """Scan a shard's tar headers (the slow way, for shards without an index file): its `ShardOffsets`, with
    `sha256` recorded as given. Raises ShardError if the shard is unsafe, truncated or not a tar."""
    path = Path(path)
    shard = path.name
    try:
        file_size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ShardError(f"shard {path} does not exist; re-download or re-render it") from exc
    members: list[tuple[str, str, int, int, int]] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                _check_member(member, shard)
                key, field = split_member_name(member.name, shard)
                if member.offset_data + member.size > file_size:
                    raise ShardError(f"shard {shard} is truncated inside member {member.name!r}; re-download or re-render it")
                members.append((key, field, member.offset, member.offset_data, member.size))
    except tarfile.TarError as exc:
        raise ShardError(f"shard {shard} is not a readable tar file ({exc}); it may be truncated or corrupt") from exc
    return ShardOffsets.from_members(shard, file_size, sha256, members)


def index_shard(path: str | os.PathLike) -> dict[str, dict[str, MemberRef]]:
    """A shard's members as key -> field -> MemberRef, keys in file order (from its index file when it has one)."""
    with ShardReader(path) as reader:
        offsets = reader.offsets
    return {key: offsets.fields_of(ordinal) for ordinal, key in enumerate(offsets.key_list())}


class MemberLayout(NamedTuple):
    """The members of an object, relative to its first: field -> relative position, and the view image fields in view
    order with their relative positions."""

    positions: dict[str, int]
    views: list[str]
    view_positions: list[int]


class ShardReader:
    """Random access to the samples of one local shard; decodes nothing. Use as a context manager or call close().

    The members' offsets come from `offsets` when given, else from the shard's index file (``.oidx`` beside it, checked
    against the shard: `orbitset.shard_index.read_index`; a mismatched one raises ShardError naming the command that
    rebuilds it), else from a scan of its headers (`scan_offsets`)."""

    def __init__(self, path: str | os.PathLike, offsets: ShardOffsets | None = None):
        self.path = Path(path)
        self._file: IO[bytes] | None = None
        if offsets is None:
            index = index_beside(self.path)
            offsets = read_index(index, self.path) if index.is_file() else scan_offsets(self.path)
        self.offsets = offsets
        self._ordinals: dict[str, int] | None = None
        #: The member layouts of this shard's objects, by their field ids (as bytes): objects of a shard mostly share
        #: one, so an object handle holds no per-member objects of its own.
        self._layouts: dict[bytes, MemberLayout] = {}

    def members(self, ordinal: int) -> tuple[int, MemberLayout]:
        """Object `ordinal`'s (position of its first member, its member layout, shared with the shard's other objects
        of the same fields): a field's member position is the first plus the layout's relative position, and
        `offsets.ref` gives that position's byte range."""
        offsets = self.offsets
        start, stop = int(offsets.starts[ordinal]), int(offsets.starts[ordinal + 1])
        ids = offsets.field_ids[start:stop].tobytes()
        layout = self._layouts.get(ids)
        if layout is None:
            names = [offsets.fields[i] for i in offsets.field_ids[start:stop].tolist()]
            views = sorted((name, index) for index, name in enumerate(names) if is_view_field(name))
            layout = self._layouts[ids] = MemberLayout({name: i for i, name in enumerate(names)},
                                                       [v for v, _ in views], [i for _, i in views])
        return start, layout

    def keys(self) -> list[str]:
        return self.offsets.key_list()

    def fields(self, key: str) -> list[str]:
        return list(self._layout(key)[1].positions)

    def _layout(self, key: str) -> tuple[int, MemberLayout]:
        """`members` of the object with `key`; ShardError when the shard has none."""
        if self._ordinals is None:
            self._ordinals = {k: ordinal for ordinal, k in enumerate(self.offsets.key_list())}
        ordinal = self._ordinals.get(key)
        if ordinal is None:
            raise ShardError(f"shard {self.path.name} has no sample with key {key!r}")
        return self.members(ordinal)

    def read(self, key: str, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """``{"__key__": key, "__shard__": name, field: bytes}`` for the given fields (all when None)."""
        start, layout = self._layout(key)
        out: dict[str, Any] = {"__key__": key, "__shard__": self.path.name}
        for name in (layout.positions if fields is None else fields):
            position = layout.positions.get(name)
            if position is None:
                raise ShardError(f"shard {self.path.name} sample {key!r} has no field {name!r}")
            out[name] = self.read_member(self.offsets.ref(start + position), key, name)
        return out

    def read_field(self, key: str, field: str) -> bytes:
        """The bytes of one field."""
        return self.read(key, [field])[field]

    def read_member(self, ref: MemberRef, key: str, field: str) -> bytes:
        """The bytes at `ref` of this shard (the loaders' per-view read: one pread); `key` and `field` name it in
        errors."""
        data = os.pread(self._handle(), ref.size, ref.offset)
        if len(data) != ref.size:
            raise ShardError(f"shard {self.path.name} sample {key!r} field {field!r} is truncated")
        return data

    def open(self) -> "ShardReader":
        """Open the shard file now (reads open it on demand); returns this reader."""
        self._handle()
        return self

    def _handle(self) -> int:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError as exc:
                raise ShardError(f"shard {self.path} does not exist; re-download or re-render it") from exc
        return self._file.fileno()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for key in self.keys():
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
