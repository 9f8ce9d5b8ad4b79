"""Sequential reading of local shards: every sample front to back, only the wanted fields' bytes kept.

The commands that visit every sample of a dataset (stats, card, deep verify, export) read each shard once, in file
order, through a buffered file: a header is parsed, the member's data is read when its field is wanted and skipped
(a seek inside the buffer) when not. Memory is one buffer and one sample, whatever the size of the shard or dataset;
nothing per member outlives its sample. This is several times faster than indexing a shard with `tarfile` first
(`orbitset.shards.index_shard`), which builds Python objects for every member.

A shard with an index file beside it (``.oidx``, `orbitset.shard_index`) and a caller that wants only some fields
(stats reads 3 small fields of every sample) is read through `orbitset.shards.ShardReader` instead: the index is
checked against the shard (size and three headers) and each wanted field is read by one seek, so the views are never
passed over. Reading every field (`wanted` None: deep verification, export) always goes front to back.

Only plain ustar members are parsed here (what `orbitset.shards.ShardWriter` writes for every name of at most 100
ASCII bytes). A shard holding anything else (a pax or GNU long-name header, a link, a directory) is read, from the
sample where that member appears on, through `orbitset.shards.ShardReader`, which applies the same safety rules and
names the shard in its errors. Member names are checked by `orbitset.shards.split_member_name` (no paths, no pickle
payloads); header checksums are verified per sample; a member cut short or a missing end-of-archive marker is a
truncated shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

import numpy as np

from orbitset.errors import ShardError
from orbitset.shard_index import index_beside
from orbitset.shards import ShardReader, split_member_name

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0")
#: Sequential read size: large enough that skipped members are seeks inside the buffer.
_BUFFER = 1 << 20


@dataclass
class ScannedSample:
    """One sample of a shard: its key, the names of all its fields (file order) and the bytes of the wanted ones."""

    key: str
    fields: list[str]
    data: dict[str, bytes]


class _NotPlain(Exception):
    """A member this reader does not parse (pax/GNU header, link, ...): the rest of the shard goes to ShardReader."""


def _octal(field: bytes, shard: str, what: str) -> int:
    text = field.split(b"\0", 1)[0].strip()
    if field[:1] and field[0] & 0x80:  # base-256 size (over 8 GiB): never written by orbitset
        raise _NotPlain
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ShardError(f"shard {shard}: a member header has an unreadable {what}; the shard is corrupt, "
                         "re-download or re-render it") from None


def _check_headers(headers: list[bytes], stored: list[int], shard: str, key: str) -> None:
    """ShardError unless every header's checksum (unsigned, chksum field counted as spaces) is the stored one."""
    blocks = np.frombuffer(b"".join(headers), dtype=np.uint8).reshape(-1, _BLOCK).astype(np.int64)
    computed = blocks[:, :148].sum(axis=1) + blocks[:, 156:].sum(axis=1) + 8 * ord(" ")
    if not np.array_equal(computed, np.asarray(stored)):
        raise ShardError(f"shard {shard}: a member header of sample {key!r} fails its checksum; the shard is corrupt, "
                         "re-download or re-render it")


def scan_shard(path: str | os.PathLike, wanted: Collection[str] | None = None) -> Iterator[ScannedSample]:
    """The samples of local shard `path` in file order (consecutive members with one key form a sample), with the
    bytes of the fields in `wanted` (all when None; some: by seeking, when the shard has an index file). Raises ShardError naming the shard when it is unsafe, corrupt
    or truncated."""
    path = Path(path)
    if wanted is not None and index_beside(path).is_file():
        yield from _reader_samples(path, wanted, skip=0)
        return
    shard = path.name
    try:
        size = path.stat().st_size
        handle = open(path, "rb", buffering=_BUFFER)
    except FileNotFoundError as exc:
        raise ShardError(f"shard {path} does not exist; re-download or re-render it") from exc
    yielded = 0
    with handle:
        try:
            for sample in _plain_samples(handle, size, shard, wanted):
                yield sample
                yielded += 1
            return
        except _NotPlain:
            pass
    yield from _reader_samples(path, wanted, skip=yielded)


def _plain_samples(handle, size: int, shard: str, wanted: Collection[str] | None) -> Iterator[ScannedSample]:
    current: ScannedSample | None = None
    headers: list[bytes] = []
    checksums: list[int] = []
    position = 0
    while True:
        header = handle.read(_BLOCK)
        if header == _ZERO_BLOCK:
            break
        if len(header) < _BLOCK:
            where = "before its end-of-archive marker" if not header else "inside a member header"
            raise ShardError(f"shard {shard} is truncated {where}; re-download or re-render it")
        if header[156:157] not in _REGULAR or header[345:346] != b"\0":  # other type, or a name prefix (a path)
            raise _NotPlain
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        length = _octal(header[124:136], shard, "size")
        position += _BLOCK
        padded = length + (-length % _BLOCK)
        if position + padded > size:
            raise ShardError(f"shard {shard} is truncated inside member {name!r}; re-download or re-render it")
        key, field = split_member_name(name, shard)
        if current is not None and current.key != key:
            _check_headers(headers, checksums, shard, current.key)
            yield current
            current, headers, checksums = None, [], []
        if current is None:
            current = ScannedSample(key, [], {})
        headers.append(header)
        checksums.append(_octal(header[148:156], shard, "checksum"))
        current.fields.append(field)
        if wanted is None or field in wanted:
            current.data[field] = handle.read(length)
            handle.seek(padded - length, os.SEEK_CUR)
        else:
            handle.seek(padded, os.SEEK_CUR)
        position += padded
    if current is not None:
        _check_headers(headers, checksums, shard, current.key)
        yield current


def _reader_samples(path: Path, wanted: Collection[str] | None, skip: int) -> Iterator[ScannedSample]:
    """The samples of `path` after the first `skip`, through ShardReader (its index file, or a scan that parses every
    tar header kind)."""
    with ShardReader(path) as reader:
        offsets = reader.offsets
        for ordinal in range(skip, offsets.objects):
            key = offsets.key(ordinal)
            start, layout = reader.members(ordinal)
            yield ScannedSample(key, list(layout.positions),
                                {f: reader.read_member(offsets.ref(start + p), key, f) for f, p in layout.positions.items()
                                 if wanted is None or f in wanted})
