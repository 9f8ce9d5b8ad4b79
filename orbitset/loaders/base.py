"""The machinery shared by every loader: shards, epoch plans, worker processes, errors, resumption, the device.

A loader is an iterable of dict batches. Per epoch it computes its rank's plan (`orbitset.loaders.plan`), hands whole
batches round-robin to torch DataLoader workers, and each worker reads, for every object of its batch, only the
fields it needs by seeking into the shard (`orbitset.shards.ShardReader` with an index built once in the main
process). Object handles with their parsed small fields (latents, rotations, meta) stay cached per process across
epochs (`ObjectCache`). Images travel from the workers as (H, W, 3) uint8 pixels decoded straight into reused
shared-memory buffers (`orbitset.loaders.buffers`), or, for GPU decoding, as JPEG bytes; the main process copies or
normalises them out (on the device when there is one). On CUDA, batches are staged in pinned memory and copied on a
side stream one batch ahead.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from itertools import groupby, islice
from operator import itemgetter
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from orbitset.errors import OrbitsetError, SchemaError, ShardError
from orbitset.loaders.buffers import BatchBuffers, shared_uint8
from orbitset.loaders.decode import (
    GpuJpegDecoder,
    ImageShapeError,
    decode_cpu,
    decoded_shape,
    normalize,
    normalize_hwc,
    to_channels_first,
)
from orbitset.loaders.plan import Item, distributed_rank_world, make_batches, object_rng, rank_objects
from orbitset.loaders.sources import Source, localise, resolve_source
from orbitset.schema import load_json, load_npy
from orbitset.shards import MemberRef, ShardReader, index_shard

ON_ERROR = ("raise", "skip")
#: The last fields of an image loader's records (`ImageLoader._image_record`).
IMAGE_FIELDS = ("_images", "_bgr", "_object", "_views")
#: Latent columns that hold the object rotation as Euler angles (3DIEBench's names).
ROTATION_FACTORS = ("rot_x", "rot_y", "rot_z")
TRANSLATION_NAMES = ("translation_x", "translation_y", "translation_z")


_NPY_V1 = re.compile(rb"\x93NUMPY\x01\x00..\{'descr': '([<>|][fiu][1248])', 'fortran_order': False, 'shape': \(([0-9, ]*)\), \}", re.S)


def read_npy(data: bytes, what: str) -> np.ndarray:
    """A plain numeric .npy array (read-only), parsing the common version-1 header directly (numpy's reader evaluates
    it with `ast`, which costs more than decoding a view's latents is worth); anything else goes to `load_npy`."""
    match = _NPY_V1.match(data)
    if match is not None:
        dtype = np.dtype(match.group(1).decode())
        shape = tuple(int(n) for n in match.group(2).split(b",") if n.strip())
        offset = 10 + int.from_bytes(data[8:10], "little")
        count = int(np.prod(shape))
        if len(data) - offset == count * dtype.itemsize:
            return np.frombuffer(data, dtype, count, offset).reshape(shape)
    return load_npy(data, what)


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
    derives from the fields once per object (e.g. PairLoader's checks and per-view rows)."""

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
        return self.reader.read_field(self.key, field)

    def _parsed(self, field: str, parse) -> Any:
        if field not in self._values:
            data = self.raw(field)
            self._values[field] = parse(data, self.where(f"field {field!r}"))
            self.nbytes += len(data)
            if self.cache is not None:
                self.cache.grow(len(data))
        return self._values[field]

    def array(self, field: str) -> np.ndarray:
        return self._parsed(field, read_npy)

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
        if not 0 <= view < len(self._view_refs):
            raise ShardError(f"{self.where()} has no view {view} (it has {len(self.views)})")
        return self.reader.read_member(self._view_refs[view], self.key, self.views[view])


def view_fields(entry: dict[str, MemberRef]) -> list[str]:
    """The view image fields of a sample (``000.jpg``, ``001.jpg``, ...) in view order."""
    return sorted(name for name in entry if name[:3].isdigit() and name.count(".") == 1)


class ObjectLoader:
    """Base of the loaders (see the module docstring); subclasses say what to read per object and how to collate."""

    #: Items drawn per object read (PairLoader: pairs_per_object).
    per_object = 1
    #: The fields of a record, in order: `_read_object` returns each record as a tuple of them.
    record_fields: tuple[str, ...] = ()
    #: Record fields that cross from the workers at stored precision, for `_derived` (main process, on the device):
    #: the per-batch maths stays off the workers, which only read and decode.
    exact_fields: frozenset[str] = frozenset()

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        split: str | None = None,
        num_workers: int = 0,
        device: str | torch.device = "cpu",
        seed: int = 0,
        shuffle: bool = True,
        resampled: bool = False,
        drop_last: bool = False,
        on_error: str = "raise",
        verify: str = "size",
        rank: int | None = None,
        world_size: int | None = None,
        prefetch_factor: int = 2,
        multiprocessing_context: str | None = None,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise OrbitsetError(f"device {str(self.device)!r} was asked for but CUDA is not available here; pass device='cpu'")
        self.batch_size, self.num_workers, self.prefetch_factor = batch_size, num_workers, prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.seed, self.shuffle, self.resampled, self.drop_last = seed, shuffle, resampled, drop_last
        self.on_error, self.verify = on_error, verify
        self.rank, self.world_size = distributed_rank_world(rank, world_size)
        self.shards, self.manifest = resolve_source(source, split)
        self.epoch, self.skipped = 0, 0
        self._batches_done = 0
        self._skip_messages: list[str] = []
        self._open_shards()

    # --- shards and index (main process) ---------------------------------------------------------------------

    def _open_shards(self) -> None:
        """Localise and check every shard, index it once (shared with the workers); a bad shard is fatal or noted."""
        self._paths: list[str] = []
        self._index: list[list[tuple[str, dict[str, MemberRef], list[str]]] | None] = []
        self._bad: dict[int, str] = {}
        self._unplanned: list[str] = []  # unreadable shards of unknown object count: one skip each per epoch
        for position, ref in enumerate(self.shards):
            try:
                path = localise(ref, self.verify)
                entries = [(key, entry, view_fields(entry)) for key, entry in index_shard(path).items()]
                if ref.objects is not None and len(entries) != ref.objects:
                    raise ShardError(f"shard {ref.name} holds {len(entries)} samples but the manifest says {ref.objects}; re-download it")
            except ShardError as exc:
                if self.on_error == "raise":
                    raise
                self._paths.append("")
                self._index.append(None)
                self._bad[position] = str(exc)
                if ref.objects is None:  # its objects cannot be planned: count the shard as one skip per epoch
                    self._unplanned.append(str(exc))
                continue
            self._paths.append(str(path))
            self._index.append(entries)
        self._counts = [len(e) if e is not None else (self.shards[i].objects or 0) for i, e in enumerate(self._index)]
        if sum(self._counts) == 0:
            raise ShardError(f"no readable objects in the {len(self.shards)} shard(s) of this source")

    def _first_object(self) -> ObjectFields:
        self._own_readers()
        position = next(i for i, e in enumerate(self._index) if e)
        return self._object(position, 0)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for spawned workers: open readers, caches and buffers stay behind (each process has its own)."""
        state = dict(self.__dict__)
        for name in ("_readers", "_object_cache", "_reader_pid", "_loader", "_gpu_decoder", "_buffers", "_stream", "_stream_next"):
            state.pop(name, None)
        return state

    def _own_readers(self) -> None:
        """Give this process its own shard readers and object cache (file handles are never shared across forked
        workers): every entry point to `_object` (`_first_object`, `_make_batch`) calls this first."""
        if getattr(self, "_reader_pid", None) != os.getpid():
            self._readers: dict[int, ShardReader] = {}
            self._object_cache = ObjectCache()
            self._reader_pid = os.getpid()

    def _object(self, position: int, ordinal: int) -> ObjectFields:
        """Object `ordinal` of shard `position`: this process's handle, cached with its parsed fields."""
        obj = self._object_cache.find((position, ordinal))
        if obj is None:
            if position not in self._readers:
                index = {key: entry for key, entry, _ in self._index[position]}
                self._readers[position] = ShardReader(self._paths[position], index=index)
            obj = ObjectFields(self._readers[position], *self._index[position][ordinal])
            self._object_cache.add((position, ordinal), obj)
        return obj

    # --- plan, length, state ---------------------------------------------------------------------------------

    def _plan(self, epoch: int) -> list[list[Item]]:
        objects = rank_objects(
            self._counts, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
            shuffle=self.shuffle, drop_last=self.drop_last, resampled=self.resampled,
        )
        return make_batches(objects, self.per_object, self.batch_size, self.drop_last)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        per_rank = sum(self._counts) // self.world_size if self.drop_last else -(-sum(self._counts) // self.world_size)
        items = per_rank * self.per_object
        return items // self.batch_size if self.drop_last else -(-items // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch` at its first batch (views and order depend on (seed, epoch))."""
        self.epoch, self._batches_done = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        """Where the loader is: resuming from it continues with exactly the batches an uninterrupted run would give."""
        return {"epoch": self.epoch, "batches_done": self._batches_done, "seed": self.seed,
                "world_size": self.world_size, "rank": self.rank, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from `state` (from `state_dict`, same seed and world size) at the next batch."""
        for name in ("seed", "world_size"):
            if state[name] != getattr(self, name):
                raise OrbitsetError(
                    f"cannot resume: the saved loader state has {name}={state[name]} but this loader has "
                    f"{getattr(self, name)}; use the same {name} to reproduce the interrupted epoch"
                )
        self.epoch, self._batches_done, self.skipped = int(state["epoch"]), int(state["batches_done"]), int(state["skipped"])

    # --- iteration (main process) ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start = self.epoch, self._batches_done
        if start == 0:
            self.skipped, self._skip_messages = 0, []
            self._note_skip(self._unplanned)
        total = len(self)  # the plan's length, the same every epoch (and on every rank)
        finished = False
        try:
            for batch in self._to_device(islice(self._batch_stream(epoch, start), total - start)):
                self._batches_done += 1
                if batch is not None:
                    yield batch
            finished = True
        finally:
            # the stream goes on with the next epoch's batches; stopped early (or on CUDA, one batch pulled ahead),
            # it is not where the next iteration starts: the next iteration restarts it
            self._stream_next = (epoch + 1, 0) if finished else None
        if self._batches_done == total:
            self._end_epoch()

    def _batch_stream(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """The workers' stream of raw batches from batch `start` of `epoch` on, through the following epochs: the one
        already running when it is at that point (an epoch that follows a finished one: the workers have been making
        its first batches meanwhile), else a new one (the workers drop what they had made ahead)."""
        if getattr(self, "_stream_next", None) == (epoch, start):
            return self._stream
        loader = self._data_loader()
        self._cursor[0], self._cursor[1] = epoch, start  # read by the workers when this iteration starts
        self._stream = iter(loader)
        return self._stream

    def _data_loader(self) -> torch.utils.data.DataLoader:
        """The torch DataLoader over this loader's batches; its workers persist across epochs (one start only)."""
        if getattr(self, "_loader", None) is None:
            self._cursor = torch.zeros(2, dtype=torch.int64).share_memory_()  # (epoch, first batch), shared with workers
            self._decode_on_gpu = self._make_gpu_decoder() is not None
            self._buffers = self._batch_buffers() if self.num_workers else None
            self._loader = torch.utils.data.DataLoader(
                _EpochBatches(self._for_workers(), self._cursor, self._buffers), batch_size=None, collate_fn=_as_made,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                prefetch_factor=self.prefetch_factor if self.num_workers else None,
                multiprocessing_context=self.multiprocessing_context if self.num_workers else None,
            )
        return self._loader

    def _for_workers(self) -> ObjectLoader:
        """A copy of this loader for the workers' dataset, as a spawned worker would unpickle it: without this
        loader's DataLoader, so that no reference cycle holds the workers and dropping the loader stops them at once
        (torch's shutdown of a DataLoader freed by the garbage collector waits 5 s per worker)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__getstate__())
        return twin

    def _end_epoch(self) -> None:
        if self.skipped:
            warnings.warn(
                f"{self.skipped} object(s) were skipped in epoch {self.epoch} (on_error='skip'); first: {self._skip_messages[0]}",
                stacklevel=3,
            )
        self.epoch, self._batches_done = self.epoch + 1, 0

    def _note_skip(self, messages: list[str]) -> None:
        self.skipped += len(messages)
        self._skip_messages.extend(messages[: max(0, 10 - len(self._skip_messages))])

    def _make_gpu_decoder(self) -> GpuJpegDecoder | None:
        return None

    def _batch_buffers(self) -> BatchBuffers | None:
        """Reusable shared buffers for the workers' batches (image loaders), made before the workers start."""
        return None

    def _to_device(self, raw_batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any] | None]:
        """Finalise batches on the device; on CUDA, one batch ahead on a side stream (pinned, non-blocking copies)."""
        if self.device.type != "cuda":
            for raw in raw_batches:
                yield self._finalize(raw)
            return
        stream = torch.cuda.Stream(self.device)

        def prepare(raw):
            with torch.cuda.stream(stream):
                batch = self._finalize(raw)
                event = torch.cuda.Event()
                event.record(stream)
            return batch, event

        pending = None
        for raw in raw_batches:
            upcoming = prepare(raw)
            if pending is not None:
                yield _hand_over(*pending)
            pending = upcoming
        if pending is not None:
            yield _hand_over(*pending)

    def _finalize(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Main-process side of a batch: count skips, numeric arrays to tensors on the device (subclasses add images)."""
        self._note_skip(raw.pop("_skipped"))
        if raw.pop("_empty", False):
            return None
        batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) if isinstance(v, np.ndarray) else v
                 for k, v in raw.items()}
        if self.exact_fields:
            derived = self._derived(batch)
            for name in self.exact_fields:
                exact = batch.pop(name, None)
                if exact is not None and name[0] != "_":
                    batch[name] = exact.float()
            batch.update({name: value.float() for name, value in derived.items()})
        return batch

    # --- worker side ---------------------------------------------------------------------------------------------

    def _make_batch(self, items: list[Item], epoch: int, buffers: BatchBuffers | None = None) -> dict[str, Any]:
        """Read and collate one batch (runs in a worker, into `buffers` when given); skipped objects are listed under
        ``_skipped``."""
        self._own_readers()
        records: list[tuple] = []
        skipped: list[str] = []
        for (position, ordinal), group in groupby(items, key=itemgetter(0, 1)):
            subs = [item[2] for item in group]
            try:
                if position in self._bad:
                    raise ShardError(self._bad[position])
                obj = self._object(position, ordinal)
                try:
                    records.extend(self._read_object(obj, subs, epoch))
                except SchemaError as exc:
                    raise ShardError(f"shard {obj.shard}: {exc}") from exc
                except (OSError, ValueError, SyntaxError) as exc:  # what Pillow and numpy raise on corrupt data
                    raise ShardError(f"{obj.where()}: unreadable data ({type(exc).__name__}: {exc})") from exc
            except ShardError as exc:
                if self.on_error == "raise":
                    raise
                skipped.extend([str(exc)] * len(subs))
        if not records:
            return {"_skipped": skipped, "_empty": True}
        columns = dict(zip(self.record_fields, zip(*records)))
        images, kept = self._collect_images(columns, buffers, skipped)
        if not kept:
            return {"_skipped": skipped, "_empty": True}
        if len(kept) < len(records):
            columns = {name: [column[row] for row in kept] for name, column in columns.items()}
        batch = self._collate(columns)
        batch.update(images)
        batch["_skipped"] = skipped
        return batch

    def _read_object(self, obj: ObjectFields, subs: list[int], epoch: int) -> list[tuple]:
        """One record (a tuple of `record_fields`) per sub-index in `subs` for object `obj` (runs in a worker)."""
        raise NotImplementedError

    def _collect_images(self, columns: dict[str, Sequence], buffers: BatchBuffers | None,
                        skipped: list[str]) -> tuple[dict[str, Any], list[int]]:
        """(image fields of the batch, the rows of the records whose images are readable); image loaders decode here
        (runs in a worker, into `buffers` when given), adding a message to `skipped` per record dropped
        (on_error="skip")."""
        return {}, list(range(len(columns["key"])))

    def _collate(self, columns: dict[str, Sequence]) -> dict[str, Any]:
        """Stack the records' columns: numeric fields to numpy arrays (floats as float32, but `exact_fields` at stored
        precision), ``key`` to a list; other ``_`` fields are left out. Workers hand numpy arrays over pickled, in the
        batch's one message: a tensor would cost a shared-memory file and a file-descriptor exchange each (about a
        fifth of a worker's time with ten small tensors a batch)."""
        batch: dict[str, Any] = {"key": list(columns["key"])}
        for name, column in columns.items():
            exact = name in self.exact_fields
            if name == "key" or (name[0] == "_" and not exact):
                continue
            stacked = np.array(column)
            batch[name] = stacked if exact else stacked.astype(np.float32 if stacked.dtype.kind == "f" else np.int64, copy=False)
        return batch

    def _derived(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Main process: batch fields computed, on the device, from the batch's tensors, `exact_fields` still at their
        stored precision (then all cast to float32; those named with a leading ``_`` are dropped)."""
        return {}

    def _rng(self, epoch: int, key: str) -> np.random.Generator:
        return object_rng(self.seed, epoch, key)


def _as_made(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate function: batches pass as the workers made them (its default would turn every numpy
    array into a tensor in the worker, to be shared with the main process through a file descriptor each)."""
    return batch


def _decode_error(exc: Exception, what: str) -> OrbitsetError:
    """The error for a view that failed to decode: ShardError (skippable) for corrupt bytes, a plain OrbitsetError
    when the image has another size than the batch's (a usage error: `size=` fixes it, skipping would not)."""
    if isinstance(exc, ImageShapeError):
        return OrbitsetError(f"{what}: {exc}; views of different sizes cannot share a batch: pass size= to resize them "
                             f"to one side")
    return ShardError(f"{what}: cannot decode the image ({type(exc).__name__}: {exc}); the shard is corrupt")


def _hand_over(batch: dict[str, Any] | None, event) -> dict[str, Any] | None:
    """Make the current stream wait for a batch prepared on the side stream, and keep its memory alive there."""
    current = torch.cuda.current_stream()
    current.wait_event(event)
    if batch is not None:
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(current)
    return batch


class _EpochBatches(torch.utils.data.IterableDataset):
    """The batches from the point named by the shared `cursor` (epoch, first batch) on: the rest of that epoch, then
    every following epoch, endlessly (the main process takes each epoch's batches in turn, so the workers never idle
    at an epoch's end). Worker w of W makes batches first + w, first + w + W, ... of that sequence. Each worker computes
    the (pure) plans itself, so persistent workers need no messages. Worker w collates into its row of `buffers` (when
    given), all free again at the start of each iteration."""

    def __init__(self, loader: ObjectLoader, cursor: torch.Tensor, buffers: BatchBuffers | None = None):
        self.loader, self.cursor, self.buffers = loader, cursor, buffers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.buffers is not None:
            self.buffers.reset(worker)
        epoch, position = (int(v) for v in self.cursor)
        position += worker
        while True:
            batches = self.loader._plan(epoch)
            if not batches:
                return
            for index in range(position, len(batches), workers):
                yield self.loader._make_batch(batches[index], epoch, self.buffers)
            remaining = max(0, len(batches) - position)  # this worker's next batch, counted from the next epoch's start
            position += -(-remaining // workers) * workers - len(batches)
            epoch += 1


class ImageLoader(ObjectLoader):
    """A loader whose items carry view images: decoding (CPU or GPU), resizing, channel fix and normalisation.

    Records end with `IMAGE_FIELDS`: their views' encoded bytes (``_images``), ``_bgr``, and ``_object``, their
    ObjectFields, and ``_views`` to name them in errors (`_image_record`).
    On the CPU path workers decode them straight into (slots, N, H, W, 3) uint8 batches ((N, slots, H, W, 3) when
    `images_by_record`), in a reused shared buffer when one is free; for GPU decoding they pass the bytes on. The main
    process turns the pixels into (slots, N, 3, H, W) images: channels-last memory by default (free: the decoder's
    own layout), contiguous with ``channels_last=False`` (one transposing pass in the main process).
    """

    #: Images per record (PairLoader: 2), and whether a batch's images are stored record by record.
    image_slots = 1
    images_by_record = False

    def __init__(
        self,
        source: Source,
        batch_size: int,
        *,
        size: int | None = None,
        normalize: bool = True,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = True,
        fix_channels: bool = True,
        decode: str = "auto",
        **kwargs,
    ):
        if decode not in ("auto", "cpu", "gpu"):
            raise ValueError(f"decode must be 'auto', 'cpu' or 'gpu', got {decode!r}")
        if size is not None and size < 1:
            raise ValueError(f"size must be a positive number of pixels or None, got {size}")
        self.size, self.normalize, self.dtype = size, normalize, dtype
        self.channels_last, self.fix_channels, self.decode = channels_last, fix_channels, decode
        super().__init__(source, batch_size, **kwargs)
        if decode == "gpu" and (self.device.type != "cuda" or GpuJpegDecoder.available_backend() is None):
            raise OrbitsetError(
                "decode='gpu' needs device='cuda' and one of torchvision, nvidia-nvimgcodec or torchcodec installed"
            )

    def _make_gpu_decoder(self) -> GpuJpegDecoder | None:
        if self.device.type != "cuda" or self.decode == "cpu" or GpuJpegDecoder.available_backend() is None:
            return None
        self._gpu_decoder = GpuJpegDecoder(self.device)
        return self._gpu_decoder

    def _batch_buffers(self) -> BatchBuffers | None:
        """Buffers sized for full batches of images at `size`, else of the first object's first view (batches of
        other sizes use fresh blocks; so do all when that view cannot be read: the workers report it)."""
        if self._decode_on_gpu:
            return None
        if self.size is not None:
            height = width = self.size
        else:
            try:
                height, width = decoded_shape(self._first_object().image(0))
            except Exception:
                return None
        nbytes = self.batch_size * self.image_slots * height * width * 3
        # per worker: the prefetched batches, the one being made and the one the main process is copying out
        return BatchBuffers.for_batches(self.num_workers, self.prefetch_factor + 2, nbytes)

    def _bgr(self, obj: ObjectFields) -> bool:
        return self.fix_channels and obj.meta.get("channel_order") == "bgr"

    def _image_record(self, obj: ObjectFields, views: Sequence[int]) -> tuple:
        """The last fields of a record (`IMAGE_FIELDS`): the encoded bytes of `views`, whether to swap R and B, the
        object and the views (to name them in errors)."""
        return tuple(obj.image(v) for v in views), self._bgr(obj), obj, views

    def _collect_images(self, columns: dict[str, Sequence], buffers: BatchBuffers | None,
                        skipped: list[str]) -> tuple[dict[str, Any], list[int]]:
        images, bgrs, objects, views = (columns[name] for name in IMAGE_FIELDS)
        count, slots = len(images), len(images[0])
        if getattr(self, "_decode_on_gpu", False):
            return {"_jpeg": [images[r][s] for s in range(slots) for r in range(count)],
                    "_jpeg_bgr": [bgrs[r] for _ in range(slots) for r in range(count)],
                    "_jpeg_what": [f"{objects[r].where()} view {views[r][s]}" for s in range(slots) for r in range(count)],
                    "_slots": slots}, list(range(count))
        height, width = self._pixel_shape(images)
        shape = (count, slots, height, width, 3) if self.images_by_record else (slots, count, height, width, 3)
        worker = torch.utils.data.get_worker_info()
        claimed = buffers.claim(worker.id, shape) if buffers is not None and worker is not None else None
        if claimed is not None:
            slot, pixels = claimed
        elif worker is not None:  # straight in shared memory (as torch's default_collate): handing it over copies nothing
            slot, pixels = None, shared_uint8(shape)
        else:  # the main process: numpy's allocation gets transparent huge pages (a few dozen page faults, not 6,400)
            slot, pixels = None, torch.from_numpy(np.empty(shape, np.uint8))
        array, size, by_record = pixels.numpy(), self.size, self.images_by_record
        kept: list[int] = []
        for record, (blobs, bgr) in enumerate(zip(images, bgrs)):
            row = len(kept)
            try:
                for s, blob in enumerate(blobs):
                    try:
                        decode_cpu(blob, size, bgr, array[(row, s) if by_record else (s, row)])
                    except Exception as exc:
                        raise _decode_error(exc, f"{objects[record].where()} view {views[record][s]}") from exc
            except ShardError as exc:
                if self.on_error == "raise":
                    raise
                skipped.append(str(exc))
                continue
            kept.append(record)
        if 0 < len(kept) < count:  # move the kept rows to the front, in the layout of a batch of len(kept)
            shape = (len(kept), *shape[1:]) if self.images_by_record else (slots, len(kept), *shape[2:])
            compact = np.ascontiguousarray(array[: len(kept)] if self.images_by_record else array[:, : len(kept)])
            array.reshape(-1)[: compact.size] = compact.reshape(-1)
            pixels = pixels.view(-1)[: compact.size].view(shape)
        if not kept and slot is not None:  # nothing to send: the worker's own claim ends here
            buffers.release(*slot)
        images = {"_pixels": shape, "_buffer": slot} if slot is not None else {"_pixels": pixels}
        return images, kept

    def _pixel_shape(self, images: Sequence[Sequence[bytes]]) -> tuple[int, int]:
        """(H, W) of the batch's images: `size`, else the first readable image's (the others must match it); (1, 1)
        when none is readable, so that decoding each view reports its error."""
        if self.size is not None:
            return self.size, self.size
        for blobs in images:
            try:
                return decoded_shape(blobs[0])
            except Exception:  # unreadable: decoding reports it, naming the view
                continue
        return 1, 1

    def _images(self, raw: dict[str, Any]) -> torch.Tensor:
        """(slots, N, 3, H, W) images on the device, uint8 or normalised `dtype`, channels-last memory unless
        ``channels_last=False`` (see the class docstring); a worker's buffer is released once copied out."""
        if "_jpeg" in raw:
            slots = raw.pop("_slots")
            decoded = self._gpu_decoder.decode(raw.pop("_jpeg"), self.size, raw.pop("_jpeg_bgr"), raw.pop("_jpeg_what"))
            images = decoded.view(slots, -1, *decoded.shape[1:])
            images = normalize(images, 2, self.dtype) if self.normalize else images
            return images.movedim(2, -1).contiguous().movedim(-1, 2) if self.channels_last else images
        pixels, slot = raw.pop("_pixels"), raw.pop("_buffer", None)
        as_they_are = not self.normalize and self.channels_last and self.device.type == "cpu"
        if slot is not None and as_they_are:  # no copy: the buffer is released when the user's tensors are freed
            pixels, slot = self._buffers.hand_out(*slot, pixels), None
        try:
            if slot is not None:
                pixels = self._buffers.view(*slot, pixels)
            if self.device.type == "cuda":
                if slot is not None:  # stage in pinned memory (the pin-memory thread only saw the buffer's number)
                    pixels = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True).copy_(pixels)
                pixels = pixels.to(self.device, non_blocking=True)
            images = self._from_hwc(pixels)
        finally:
            if slot is not None:
                self._buffers.release(*slot)
        return images.transpose(0, 1) if self.images_by_record else images

    def _from_hwc(self, pixels: torch.Tensor) -> torch.Tensor:
        """(A, B, H, W, 3) contiguous uint8 -> (A, B, 3, H, W), uint8 or normalised, in the requested memory layout
        (a view of `pixels` only for uint8 channels-last)."""
        if self.normalize:
            return normalize_hwc(pixels, self.dtype, self.channels_last)
        return pixels.movedim(-1, -3) if self.channels_last else to_channels_first(pixels)
