"""Object handles: a loader's shards indexed once, and lazy, cached access to one object's fields in them.

`ShardIndex` is made once in the main process (every shard localised, checked against its manifest record and its
tar headers scanned) and is plain data, shared with the workers. `ObjectFields` reads an object's fields by seeking
into its shard, each on first use; `ObjectCache` keeps the recently used handles with their parsed fields, per
process, across epochs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from orbitset.errors import SchemaError, ShardError
from orbitset.loaders.sources import ShardRef, localise
from orbitset.schema import is_view_field, load_json, read_npy
from orbitset.shards import MemberRef, ShardReader, index_shard

#: One object of a shard's index: (key, field -> byte range, view image fields in view order).
IndexEntry = tuple[str, dict[str, MemberRef], list[str]]


def _read_numeric(data: bytes, what: str) -> np.ndarray:
    """A numeric (bool, integer or float) .npy array; SchemaError naming `what` for any other."""
    array = read_npy(data, what)
    if array.dtype.kind not in "biuf":
        raise SchemaError(f"{what}: {array.dtype} values, not numbers")
    return array


@dataclass
class ShardIndex:
    """A loader's shards, opened in the main process. Per shard position: its local path and its objects (or, for a
    shard that could not be opened under ``on_error="skip"``, an empty path, None and the reason in `bad`)."""

    paths: list[str]
    objects: list[list[IndexEntry] | None]
    #: Why each unreadable shard (by position) could not be opened.
    bad: dict[int, str]
    #: The reasons of unreadable shards whose object count is unknown (no manifest): one skip each per epoch.
    unplanned: list[str]
    #: Objects per shard, as planned (an unreadable shard counts with its manifest's count, so its objects are skipped).
    counts: list[int]

    @classmethod
    def open(cls, refs: Sequence[ShardRef], verify: str, skip_bad: bool) -> ShardIndex:
        """Localise, check (`verify`: see `orbitset.loaders.sources.localise`) and index every shard of `refs`; a bad
        shard raises ShardError, or with `skip_bad` is noted in `bad`. No readable object at all raises ShardError."""
        paths: list[str] = []
        objects: list[list[IndexEntry] | None] = []
        bad: dict[int, str] = {}
        unplanned: list[str] = []
        for position, ref in enumerate(refs):
            try:
                path = localise(ref, verify)
                entries = [(key, entry, sorted(filter(is_view_field, entry))) for key, entry in index_shard(path).items()]
                if ref.objects is not None and len(entries) != ref.objects:
                    raise ShardError(f"shard {ref.name} holds {len(entries)} samples but the manifest says {ref.objects}; re-download it")
            except ShardError as exc:
                if not skip_bad:
                    raise
                paths.append("")
                objects.append(None)
                bad[position] = str(exc)
                if ref.objects is None:
                    unplanned.append(str(exc))
                continue
            paths.append(str(path))
            objects.append(entries)
        counts = [len(e) if e is not None else (refs[i].objects or 0) for i, e in enumerate(objects)]
        if sum(counts) == 0:
            raise ShardError(f"no readable objects in the {len(refs)} shard(s) of this source")
        return cls(paths, objects, bad, unplanned, counts)

    def first_readable(self) -> int:
        """The position of the first shard holding an object."""
        return next(position for position, entries in enumerate(self.objects) if entries)


#: What `ObjectCache` counts for an object handle itself (its index entry and names), besides its parsed fields.
HANDLE_BYTES = 1024


class ObjectCache:
    """Handles (`ObjectFields`) of recently read objects with their parsed fields, per process, kept across epochs:
    the least recently used are dropped beyond `max_bytes`, each counted as `HANDLE_BYTES` plus its parsed fields'
    encoded sizes (which numeric arrays share their memory with)."""

    def __init__(self, max_bytes: int = 64 << 20):
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

    def __init__(self, reader: ShardReader, key: str, entry: dict[str, MemberRef], views: list[str]):
        self.reader, self.key, self.entry, self.views = reader, key, entry, views
        self.shard = reader.path.name
        self.nbytes, self.cache, self.prepared = HANDLE_BYTES, None, None
        self._values: dict[str, Any] = {}
        self._view_refs = [entry[name] for name in views]

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
        try:
            return self.reader.read_field(self.key, field)
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
        return field in self.entry

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
        if not 0 <= view < len(self._view_refs):
            raise ShardError(f"{self.where()} has no view {view} (it has {len(self.views)})")
        try:
            return self.reader.read_member(self._view_refs[view], self.key, self.views[view])
        except OSError as exc:
            raise ShardError(f"{self.where(f'view {view}')}: cannot read the shard ({exc})") from exc
