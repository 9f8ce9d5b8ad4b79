"""Offsets of a shard's members, written once beside the shard: orbitset's index file and DALI's ``.idx``.

`ShardOffsets` holds one shard's members in numpy arrays (never a Python object per member): per object its key and
the range of its members; per member its field (an index into the shard's field table), the offset of its tar header,
the offset of its data and its size in bytes. Members are in file order, an object's members consecutive.

The index file (``train-000007.oidx`` beside ``train-000007.tar``) stores exactly that, little-endian:

    magic b"ORBITIDX" | uint32 version | uint32 n | n bytes of JSON header | zeros to a multiple of 8 |
    int64 starts[objects + 1] | int64 key_starts[objects + 1] | int64 headers[members] | int64 offsets[members] |
    int64 sizes[members] | int32 fields[members] | uint8 keys[key_bytes]

The JSON header names the shard and binds the index to it (``shard``, ``shard_bytes``, ``shard_sha256``), and gives
``objects``, ``members``, ``key_bytes`` and the field table ``fields``. Object i's members are
``starts[i]:starts[i + 1]``; its key is ``keys[key_starts[i]:key_starts[i + 1]]`` in UTF-8. Nothing in it is
pickled. `read_index` refuses an index that is not of its shard: another size or sha256 than the shard's (as far as
the caller knows it), offsets outside the file, members that overlap or are out of order, or a header that is not
where the index says (the first, middle and last member's headers are read back and compared).

DALI's index (``train-000007.idx``, format v1.2) is text: ``v1.2 <samples>``, then per sample one line of
``<field> <data offset> <size> <member name>`` for each of its members, which lets
``nvidia.dali.fn.readers.webdataset(paths=..., index_paths=...)`` read orbitset shards without scanning them.

Both are written atomically (temporary name, then rename) by `write_index_files`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from orbitset.errors import ShardError
from orbitset.manifests.model import IndexFile, write_bytes_atomic

MAGIC = b"ORBITIDX"
VERSION = 1
INDEX_SUFFIX = ".oidx"
DALI_SUFFIX = ".idx"
DALI_VERSION = "v1.2"
_BLOCK = 512
#: Where a ustar header holds its magic, name and size fields.
_USTAR_MAGIC = slice(257, 262)
_NAME = slice(0, 100)
_SIZE = slice(124, 136)


def index_name(shard: str) -> str:
    """File name of the orbitset index of shard file `shard`: ``train-000007.oidx``."""
    return shard[: -len(".tar")] + INDEX_SUFFIX


def index_beside(shard: Path) -> Path:
    """The orbitset index file beside local shard file `shard` (whether or not it exists)."""
    return shard.with_name(index_name(shard.name))


def dali_index_name(shard: str) -> str:
    """File name of the DALI index of shard file `shard`: ``train-000007.idx``."""
    return shard[: -len(".tar")] + DALI_SUFFIX


class MemberRef(NamedTuple):
    """Byte range of one field's data inside a shard file."""

    offset: int
    size: int


@dataclass(frozen=True)
class ShardOffsets:
    """The members of one shard (see the module docstring): keys as UTF-8 bytes; `shard_sha256` is "" when it was not
    computed."""

    shard: str
    shard_bytes: int
    shard_sha256: str
    fields: tuple[str, ...]
    keys: np.ndarray
    starts: np.ndarray
    field_ids: np.ndarray
    headers: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    @classmethod
    def from_members(cls, shard: str, shard_bytes: int, shard_sha256: str,
                     members: list[tuple[str, str, int, int, int]]) -> ShardOffsets:
        """From (key, field, header offset, data offset, size) per member in file order; consecutive members with
        one key form an object (a key that comes back later is a ShardError: it would be two objects)."""
        keys: list[str] = []
        starts: list[int] = []
        table: dict[str, int] = {}
        for position, (key, field, *_) in enumerate(members):
            if not keys or keys[-1] != key:
                keys.append(key)
                starts.append(position)
            table.setdefault(field, len(table))
        if len(set(keys)) != len(keys):
            raise ShardError(f"shard {shard}: the members of an object are not consecutive; rewrite the shard with "
                             "orbitset's writer")
        numbers = np.array([m[2:] for m in members], dtype=np.int64).reshape(-1, 3)
        return cls(shard, shard_bytes, shard_sha256, tuple(table), np.array([k.encode("utf-8") for k in keys], dtype=bytes),
                   np.array(starts + [len(members)], dtype=np.int64),
                   np.array([table[m[1]] for m in members], dtype=np.int32),
                   numbers[:, 0].copy(), numbers[:, 1].copy(), numbers[:, 2].copy())

    @property
    def objects(self) -> int:
        return len(self.keys)

    def key(self, ordinal: int) -> str:
        """The key of object `ordinal`."""
        return self.keys[ordinal].decode("utf-8")

    def key_list(self) -> list[str]:
        """Every object's key, in file order."""
        return [key.decode("utf-8") for key in self.keys.tolist()]

    def for_reading(self) -> ShardOffsets:
        """The same offsets in less memory, once checked: without the header offsets (used only by the checks), data
        offsets and sizes as uint32 in a shard under 4 GiB, field ids as uint16 (10 bytes per member in all)."""
        small = self.shard_bytes < 2**32
        offsets, sizes = (self.offsets.astype(np.uint32), self.sizes.astype(np.uint32)) if small else (self.offsets, self.sizes)
        field_ids = self.field_ids.astype(np.uint16) if len(self.fields) < 2**16 else self.field_ids
        return dataclasses.replace(self, headers=np.zeros(0, np.int64), offsets=offsets, sizes=sizes, field_ids=field_ids)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, in bytes."""
        return sum(a.nbytes for a in (self.keys, self.starts, self.field_ids, self.headers, self.offsets, self.sizes))

    def members(self, ordinal: int) -> range:
        """Positions of object `ordinal`'s members."""
        return range(int(self.starts[ordinal]), int(self.starts[ordinal + 1]))

    def ref(self, member: int) -> MemberRef:
        """The byte range of the member at position `member`."""
        return MemberRef(int(self.offsets[member]), int(self.sizes[member]))

    def fields_of(self, ordinal: int) -> dict[str, MemberRef]:
        """Field -> byte range of object `ordinal`, in file order."""
        start, stop = int(self.starts[ordinal]), int(self.starts[ordinal + 1])
        fields = self.fields
        return {fields[i]: MemberRef(offset, size) for i, offset, size in
                zip(self.field_ids[start:stop].tolist(), self.offsets[start:stop].tolist(), self.sizes[start:stop].tolist())}

    def check(self, shard_bytes: int, shard_sha256: str | None = None) -> str | None:
        """Why these offsets cannot be the shard's (size `shard_bytes`, sha256 when known), or None."""
        if self.shard_bytes != shard_bytes:
            return f"it was made for a shard of {self.shard_bytes} bytes, the shard has {shard_bytes}"
        if shard_sha256 and self.shard_sha256 and self.shard_sha256 != shard_sha256:
            return f"it was made for a shard with sha256 {self.shard_sha256[:12]}..., the shard's is {shard_sha256[:12]}..."
        members = len(self.sizes)
        if len(self.starts) != self.objects + 1 or self.starts[0] != 0 or self.starts[-1] != members or \
                np.any(np.diff(self.starts) < 1):
            return "its object ranges are inconsistent"
        if members and (np.any(self.field_ids < 0) or np.any(self.field_ids >= len(self.fields))):
            return "it names fields outside its field table"
        if np.any(self.sizes < 0) or np.any(self.headers < 0) or np.any(self.offsets < self.headers + _BLOCK):
            return "a member's data starts inside its own header"
        if np.any(self.offsets + self.sizes > shard_bytes):
            return "a member ends outside the shard file"
        if np.any(self.headers[1:] < self.offsets[:-1] + self.sizes[:-1]):
            return "a member's header lies inside another member's data (overlapping or out of order)"
        return None

    def check_headers(self, handle: int) -> str | None:
        """Read back the tar headers of the first, middle and last member from the open shard file descriptor
        `handle`; why one is not where and what the index says, or None."""
        for member in sorted({0, len(self.sizes) // 2, len(self.sizes) - 1} - {-1}):
            header = os.pread(handle, _BLOCK, int(self.headers[member]))
            if len(header) < _BLOCK or header[_USTAR_MAGIC] != b"ustar":
                return f"member {member} has no tar header at byte {int(self.headers[member])}"
            if int(self.offsets[member]) != int(self.headers[member]) + _BLOCK:
                continue  # a pax header precedes the member: its name is not in this block
            ordinal = int(np.searchsorted(self.starts, member, side="right")) - 1
            name = self.keys[ordinal] + b"." + self.fields[self.field_ids[member]].encode("utf-8")
            size = int(header[_SIZE].rstrip(b"\0 ") or b"0", 8)
            if header[_NAME].rstrip(b"\0") != name or size != int(self.sizes[member]):
                return f"the tar header at byte {int(self.headers[member])} is not member {name.decode()!r} of its size"
        return None

    # -- the index file -----------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        keys = self.keys.tolist()
        key_starts = np.concatenate([[0], np.cumsum([len(k) for k in keys], dtype=np.int64)]).astype(np.int64)
        header = json.dumps({"shard": self.shard, "shard_bytes": self.shard_bytes, "shard_sha256": self.shard_sha256,
                             "objects": self.objects, "members": len(self.sizes), "fields": list(self.fields),
                             "key_bytes": int(key_starts[-1])}, sort_keys=True).encode("utf-8")
        head = MAGIC + struct.pack("<II", VERSION, len(header)) + header
        head += bytes(-len(head) % 8)
        arrays = (self.starts, key_starts, self.headers, self.offsets, self.sizes)
        return b"".join([head, *(a.astype("<i8").tobytes() for a in arrays), self.field_ids.astype("<i4").tobytes(),
                         b"".join(keys)])

    @classmethod
    def from_bytes(cls, data: bytes, what: str) -> ShardOffsets:
        """Parse an index file's bytes (of `what`, for errors); ShardError if it is not a complete index of this version."""
        try:
            if data[:8] != MAGIC:
                raise ValueError("not an orbitset index (no ORBITIDX magic)")
            version, length = struct.unpack_from("<II", data, 8)
            if version != VERSION:
                raise ValueError(f"index version {version}, this orbitset reads version {VERSION}")
            header = json.loads(data[16 : 16 + length].decode("utf-8"))
            objects, members, key_bytes = (int(header[k]) for k in ("objects", "members", "key_bytes"))
            position = 16 + length + (-(16 + length) % 8)
            sizes = [(objects + 1, "<i8"), (objects + 1, "<i8"), (members, "<i8"), (members, "<i8"), (members, "<i8"),
                     (members, "<i4"), (key_bytes, "u1")]
            arrays = []
            for count, dtype in sizes:
                end = position + count * np.dtype(dtype).itemsize
                if end > len(data):
                    raise ValueError("the file ends early (truncated)")
                arrays.append(np.frombuffer(data, dtype, count, position).astype(dtype.lstrip("<")))
                position = end
            if position != len(data):
                raise ValueError("the file is longer than its header says")
            starts, key_starts, headers, offsets, lengths, field_ids, blob = arrays
            raw = blob.tobytes()
            raw.decode("utf-8")  # keys are UTF-8 text
            keys = [raw[int(a) : int(b)] for a, b in zip(key_starts[:-1], key_starts[1:])]
            return cls(str(header["shard"]), int(header["shard_bytes"]), str(header["shard_sha256"]),
                       tuple(str(f) for f in header["fields"]), np.array(keys, dtype=bytes), starts, field_ids, headers,
                       offsets, lengths)
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
            raise ShardError(f"it is unreadable as an index of {what} ({exc})") from exc

    def dali_lines(self) -> Iterator[str]:
        """The lines of DALI's index (format v1.2) of this shard, each ending with a newline."""
        yield f"{DALI_VERSION} {self.objects}\n"
        for ordinal, key in enumerate(self.key_list()):
            parts = []
            for member in self.members(ordinal):
                field = self.fields[self.field_ids[member]]
                parts.append(f"{field} {int(self.offsets[member])} {int(self.sizes[member])} {key}.{field}")
            yield " ".join(parts) + "\n"


def write_index_files(offsets: ShardOffsets, directory: Path) -> tuple[IndexFile, IndexFile]:
    """Write the orbitset index and DALI's ``.idx`` of `offsets` into `directory`, atomically; their records."""
    records = []
    for name, data in ((index_name(offsets.shard), offsets.to_bytes()),
                       (dali_index_name(offsets.shard), "".join(offsets.dali_lines()).encode("utf-8"))):
        write_bytes_atomic(directory / name, data)
        records.append(IndexFile(name, len(data), hashlib.sha256(data).hexdigest()))
    return records[0], records[1]


def read_index(path: Path, shard_path: Path, shard_sha256: str | None = None,
               record: IndexFile | None = None) -> ShardOffsets:
    """The offsets in index file `path`, checked against `record` (the index's manifest entry: size and sha256, when
    given) and the shard at `shard_path` (its size, `shard_sha256` when known, and three of its headers); ShardError
    naming the index, what does not match, and the command that rebuilds it."""
    fix = f"rebuild it with 'orbitset index {path.parent}' (a dataset folder), or delete it"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ShardError(f"index {path} of shard {shard_path.name} is missing; {fix}") from None
    problem = None
    if record is not None and (len(data) != record.bytes or hashlib.sha256(data).hexdigest() != record.sha256):
        problem = "it is not the index file the manifest lists (size or sha256 differ)"
    offsets = None
    if problem is None:
        try:
            offsets = ShardOffsets.from_bytes(data, str(path))
            problem = offsets.check(shard_path.stat().st_size, shard_sha256)
        except ShardError as exc:
            problem = str(exc)
    if problem is None:
        with open(shard_path, "rb") as shard:
            problem = offsets.check_headers(shard.fileno())
    if problem is not None:
        raise ShardError(f"index {path} does not match shard {shard_path.name}: {problem}; {fix}")
    return offsets.for_reading()
