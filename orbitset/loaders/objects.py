"""Object handles: a loader's shards as planned, each opened by the process that first reads it, and lazy, cached
access to one object's fields in them.

`ShardSet` is made in the main process from the manifest alone (objects per shard; local shards' sizes checked, their
sha256 when asked) and is plain data of a size proportional to the number of shards: it is all the workers receive.
A process opens a shard when it first reads from it (`ShardSet.open_reader`): it localises the shard (remote ones are
fetched then, not before) and reads its members' offsets from its index file (`orbitset.shard_index`), never
scanning the tar; a shard without one (written before orbitset wrote them, or named without a manifest) has its
headers scanned once and its index built into the cache folder, where later opens find it. `ReaderCache` keeps the
recently opened shards' readers, offsets as numpy arrays, per process. `ObjectFields` reads an object's fields by
seeking into its shard, each on first use; `ObjectCache` keeps the recently used handles with their parsed fields,
per process, across epochs.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from orbitset.errors import SchemaError, ShardError
from orbitset.loaders.cache import ShardCache
from orbitset.loaders.sources import ShardRef, cache_dir, localise, localise_index
from orbitset.schema import load_json, read_npy
from orbitset.manifests.model import write_bytes_atomic
from orbitset.shard_index import ShardOffsets, index_beside, index_name, read_index
from orbitset.shards import ShardReader, scan_offsets

#: What the message for datasets without index files says to run.
INDEX_HINT = "add them with 'orbitset index DIR' (DIR: the dataset folder) to open shards without scanning them"


def _read_numeric(data: bytes, what: str) -> np.ndarray:
    """A numeric (bool, integer or float) .npy array; SchemaError naming `what` for any other."""
    array = read_npy(data, what)
    if array.dtype.kind not in "biuf":
        raise SchemaError(f"{what}: {array.dtype} values, not numbers")
    return array


@dataclass
class ShardSet:
    """A loader's shards, as the main process plans them (see the module docstring): per shard position its
    reference and planned object count; the shards found unreadable in the main process (`bad`: position -> reason;
    they count with their manifest's count, so their objects are skipped) and the reasons of those whose count is
    unknown (`unplanned`: no manifest; one skip each per epoch)."""

    refs: list[ShardRef]
    verify: str
    cache: ShardCache
    counts: list[int]
    bad: dict[int, str]
    unplanned: list[str]

    @classmethod
    def open(cls, refs: Sequence[ShardRef], verify: str, skip_bad: bool, cache: ShardCache) -> ShardSet:
        """Plan `refs`: a manifest's shards from their entries (local ones checked as `verify` asks: see
        `orbitset.loaders.sources.localise`), shards named without a manifest opened to count their objects. A bad
        shard raises ShardError, or with `skip_bad` is noted in `bad`. No object at all raises ShardError."""
        shards = cls(list(refs), verify, cache, [], {}, [])
        for position, ref in enumerate(refs):
            try:
                if ref.objects is None:
                    with shards.open_reader(position) as reader:
                        count = reader.offsets.objects
                elif not ref.remote:
                    localise(ref, verify)
            except ShardError as exc:
                if not skip_bad:
                    raise
                shards.bad[position] = str(exc)
                if ref.objects is None:
                    shards.unplanned.append(str(exc))
                count = 0
            shards.counts.append(count if ref.objects is None else ref.objects)
        if sum(shards.counts) == 0:
            raise ShardError(f"no readable objects in the {len(refs)} shard(s) of this source")
        return shards

    @property
    def unindexed(self) -> int:
        """How many of the manifest's shards have no index file listed (datasets written before index files)."""
        return sum(ref.entry is not None and ref.entry.index is None for ref in self.refs)

    def fetch(self, position: int) -> None:
        """Fetch remote shard `position` and its index into the cache, if not there (for prefetching: errors are left
        for `open_reader` to report)."""
        ref = self.refs[position]
        try:
            path = localise(ref, "size", self.cache)
            if ref.entry is not None and ref.entry.index is not None:
                localise_index(ref, path, self.cache)
        except (ShardError, OSError):
            pass

    def open_reader(self, position: int) -> ShardReader:
        """A reader of shard `position` with its offsets (see the module docstring); ShardError when the shard or its
        index is unreadable, does not match its manifest, or holds another number of objects than planned."""
        ref = self.refs[position]
        if position in self.bad:
            raise ShardError(self.bad[position])
        # a local shard of the manifest was checked as `verify` asks when it was planned (`open`); here only its size
        verify = "size" if self.verify == "sha256" and not ref.remote and ref.objects is not None else self.verify
        for attempt in range(3):
            path = localise(ref, verify, self.cache)
            try:
                reader = ShardReader(path, self._offsets(ref, path)).open()  # once open, eviction cannot hurt it
                break
            except FileNotFoundError as exc:  # evicted from a bounded cache by another process meanwhile
                if not ref.remote or attempt == 2:
                    raise ShardError(f"shard {ref.name}: cannot read the shard or its index ({exc})") from exc
            except OSError as exc:
                raise ShardError(f"shard {ref.name}: cannot read the shard or its index ({exc})") from exc
        if ref.objects is not None and reader.offsets.objects != ref.objects:
            raise ShardError(f"shard {ref.name} holds {reader.offsets.objects} samples but the manifest says "
                             f"{ref.objects}; re-download it")
        return reader

    def _offsets(self, ref: ShardRef, path: Path) -> ShardOffsets:
        if ref.entry is not None and ref.entry.index is not None:
            index = localise_index(ref, path, self.cache)
            return read_index(index, path, shard_sha256=ref.sha256, record=ref.entry.index)
        beside = index_beside(path)
        if ref.entry is None and beside.is_file():
            return read_index(beside, path)
        return _cached_index(path, ref.sha256 or "")


def _cached_index(path: Path, sha256: str) -> ShardOffsets:
    """The offsets of a shard without a listed index file: from the index built into the cache folder by an earlier
    open (rebuilt when it does not match the shard), else scanned now and stored there, atomically."""
    stat = path.stat()
    tag = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{sha256}".encode()).hexdigest()[:16]
    cached = cache_dir() / "index" / f"{tag}-{index_name(path.name)}"
    if cached.is_file():
        try:
            return read_index(cached, path, shard_sha256=sha256 or None)
        except ShardError:
            pass  # ours, and stale or damaged: built again below
    offsets = scan_offsets(path, sha256)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(cached, offsets.to_bytes())
    return offsets.for_reading()


class ReaderCache:
    """The readers of the shards a process opened most recently, with their offsets (numpy arrays), bounded by
    `max_shards` readers and `max_bytes` of offsets: beyond either, the least recently used is dropped; its file
    closes once no cached object handle holds it either (handles keep reading a shard evicted from a bounded cache
    through the file they hold open)."""

    def __init__(self, max_shards: int = 512, max_bytes: int = 32 << 20):
        self.max_shards, self.max_bytes, self.bytes = max_shards, max_bytes, 0
        self._readers: OrderedDict[int, ShardReader] = OrderedDict()

    def __contains__(self, position: int) -> bool:
        return position in self._readers

    def get(self, position: int, open_reader: Callable[[int], ShardReader]) -> ShardReader:
        reader = self._readers.get(position)
        if reader is not None:
            self._readers.move_to_end(position)
            return reader
        reader = self._readers[position] = open_reader(position)
        self.bytes += reader.offsets.nbytes
        while len(self._readers) > 1 and (len(self._readers) > self.max_shards or self.bytes > self.max_bytes):
            _, dropped = self._readers.popitem(last=False)
            self.bytes -= dropped.offsets.nbytes
        return reader

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self.bytes = 0


#: What `ObjectCache` counts for an object handle itself (its index entry and names), besides its parsed fields.
HANDLE_BYTES = 1024


class ObjectCache:
    """Handles (`ObjectFields`) of recently read objects with their parsed fields, per process, kept across epochs:
    the least recently used are dropped beyond `max_bytes`, each counted as `HANDLE_BYTES` plus its parsed fields'
    encoded sizes (which numeric arrays share their memory with)."""

    def __init__(self, max_bytes: int = 16 << 20):
        self.max_bytes, self.bytes = max_bytes, 0
        self._objects: OrderedDict[Any, ObjectFields] = OrderedDict()

    def find(self, object_id: Any) -> ObjectFields | None:
        """The handle of `object_id` (now the most recently used), or None."""
        obj = self._objects.get(object_id)
        if obj is not None:
            self._objects.move_to_end(object_id)
        return obj

    def add(self, object_id: Any, obj: ObjectFields) -> ObjectFields:
        self._objects[object_id] = obj
        obj.cache = self
        self.grow(obj.nbytes)
        return obj

    def grow(self, nbytes: int) -> None:
        """An object in the cache has parsed `nbytes` more: drop the least recently used beyond the bound."""
        self.bytes += nbytes
        while self.bytes > self.max_bytes and len(self._objects) > 1:
            _, dropped = self._objects.popitem(last=False)
            dropped.cache = None
            self.bytes -= dropped.nbytes


class ObjectFields:
    """Lazy access to one object's fields in a shard: each field is read (one seek) and parsed on first use and kept
    with the handle, which an `ObjectCache` keeps for later reads of the object. `prepared` holds what a loader
    derives from the fields once per object (e.g. PairLoader's checks and per-view rows).

    Data errors raise ShardError or SchemaError naming the shard, the sample and the field (an OSError reading the
    shard becomes a ShardError)."""

    def __init__(self, reader: ShardReader, ordinal: int):
        """Object `ordinal` (its position in the shard) of `reader`'s shard."""
        self.reader, self.key = reader, reader.offsets.key(ordinal)
        #: The position of the object's first member in the shard's offsets, and its member layout (shared).
        self._start, self._layout = reader.members(ordinal)
        #: The view image fields, in view order.
        self.views = self._layout.views
        self.shard = reader.path.name
        self.nbytes, self.cache, self.prepared = HANDLE_BYTES, None, None
        self._values: dict[str, Any] = {}

    def where(self, what: str = "") -> str:
        return f"shard {self.shard} sample {self.key!r}" + (f" {what}" if what else "")

    def prepare(self, make: Callable[[ObjectFields], tuple[Any, int]]) -> Any:
        """Set and return ``self.prepared`` to the value of ``make(self)``, which returns (value, its size in bytes),
        counted in the cache's bound. Errors raised by `make` leave nothing prepared."""
        self.prepared, nbytes = make(self)
        self.nbytes += nbytes
        if self.cache is not None:
            self.cache.grow(nbytes)
        return self.prepared

    def raw(self, field: str) -> bytes:
        position = self._layout.positions.get(field)
        if position is None:
            raise ShardError(f"{self.where()} has no field {field!r}")
        try:
            return self.reader.read_member(self.reader.offsets.ref(self._start + position), self.key, field)
        except OSError as exc:
            raise ShardError(f"{self.where(f'field {field!r}')}: cannot read the shard ({exc})") from exc

    def _parsed(self, field: str, parse: Callable[[bytes, str], Any]) -> Any:
        if field not in self._values:
            data = self.raw(field)
            self._values[field] = parse(data, self.where(f"field {field!r}"))
            self.nbytes += len(data)
            if self.cache is not None:
                self.cache.grow(len(data))
        return self._values[field]

    def array(self, field: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The numeric array `field` (read-only); with `shape`, one of another shape raises ShardError."""
        array = self._parsed(field, _read_numeric)
        if shape is not None and array.shape != shape:
            raise ShardError(f"{self.where(field)} has shape {array.shape}, not {shape} ({len(self.views)} views)")
        return array

    def has(self, field: str) -> bool:
        return field in self._layout.positions

    @property
    def meta(self) -> dict:
        meta = self._parsed("meta.json", load_json)
        if not isinstance(meta, dict) or "class_index" not in meta:
            raise SchemaError(f"{self.where('meta.json')}: not an object with a class_index")
        return meta

    @property
    def num_views(self) -> int:
        return len(self.views)

    def image(self, view: int) -> bytes:
        """The encoded bytes of view `view`."""
        if not 0 <= view < len(self.views):
            raise ShardError(f"{self.where()} has no view {view} (it has {len(self.views)})")
        member = self._start + self._layout.view_positions[view]
        try:
            return self.reader.read_member(self.reader.offsets.ref(member), self.key, self.views[view])
        except OSError as exc:
            raise ShardError(f"{self.where(f'view {view}')}: cannot read the shard ({exc})") from exc
