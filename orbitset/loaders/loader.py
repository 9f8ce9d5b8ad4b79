"""The base of every loader: arguments, epoch plans, iteration and resumption, reading a batch, errors.

A loader is an iterable of dict batches. Per epoch it computes its rank's plan (`orbitset.loaders.plan`) and hands
whole batches round-robin to worker processes (`orbitset.loaders.stream`); a worker reads, for every object of its
batch, only the fields it needs, by seeking into the shard through object handles kept across epochs
(`orbitset.loaders.objects`). Workers send numeric arrays at stored precision; the main process turns them into
tensors on the device and computes the derived fields there.

Errors: bad arguments raise UsageError. Under ``on_error="skip"`` an object whose data is corrupt (ShardError,
SchemaError; an image that does not decode is a ShardError naming its view) is skipped, counted in `skipped` and
reported in a warning at the end of the epoch; every other exception propagates.
"""

from __future__ import annotations

import warnings
from itertools import groupby, islice
from operator import itemgetter
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from orbitset.errors import OrbitsetError, SchemaError, ShardError, UsageError
from orbitset.loaders.buffers import BatchBuffers
from orbitset.loaders.objects import INDEX_HINT, ObjectFields, ShardSet
from orbitset.loaders.plan import Item, distributed_rank_world, make_batches, object_rng, rank_objects
from orbitset.loaders.cache import ShardCache, parse_size
from orbitset.loaders.sources import VERIFY_MODES, Source, cache_dir, resolve_source
from orbitset.loaders.stream import BatchStream, WorkerState, on_device
from orbitset.symmetry.records import records_for_loader

ON_ERROR = ("raise", "skip")
#: The data errors ``on_error="skip"`` skips an object for.
SKIPPED_ERRORS = (ShardError, SchemaError)


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
        cache_limit: int | str | None = None,
        shuffle_window: int | None = None,
        symmetry: bool = False,
    ):
        if on_error not in ON_ERROR:
            raise UsageError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if verify not in VERIFY_MODES:
            raise UsageError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        for name, value, least in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                   ("prefetch_factor", prefetch_factor, 1)):
            if value < least:
                raise UsageError(f"{name} must be at least {least}, got {value}")
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise UsageError(f"device {device!r} is not a torch device; pass 'cpu', 'cuda' or 'cuda:N'") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise OrbitsetError(f"device {str(self.device)!r} was asked for but CUDA is not available here; pass device='cpu'")
        self.batch_size, self.num_workers, self.prefetch_factor = batch_size, num_workers, prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.seed, self.shuffle, self.resampled, self.drop_last = seed, shuffle, resampled, drop_last
        self.on_error, self.verify = on_error, verify
        self.rank, self.world_size = distributed_rank_world(rank, world_size)
        if shuffle_window is not None and (isinstance(shuffle_window, bool) or not isinstance(shuffle_window, int)
                                           or shuffle_window < 1):
            raise UsageError(f"shuffle_window must be a number of shards of at least 1 or None, got {shuffle_window!r}")
        limit = None if cache_limit is None else parse_size(cache_limit)
        self.shards, self.manifest = resolve_source(source, split)
        largest = max((ref.bytes or 0) for ref in self.shards)
        if limit is not None and largest > limit:
            raise UsageError(f"cache_limit={cache_limit!r} ({limit} bytes) is smaller than the largest shard ({largest} "
                             "bytes); give a limit of several shards")
        #: Shards per shuffle block (`orbitset.loaders.plan`): given, else what half a bounded cache holds, else None
        #: (the rank's objects shuffled as a whole).
        self.shuffle_window = shuffle_window if shuffle_window is not None or limit is None or not largest else \
            max(1, limit // largest // 2)
        self.epoch, self.skipped = 0, 0
        self._batches_done = 0
        self._skip_messages: list[str] = []
        self._shard_set = ShardSet.open(self.shards, verify, on_error == "skip", ShardCache(cache_dir(), limit))
        if self._shard_set.unindexed:
            warnings.warn(f"{self._shard_set.unindexed} of the {len(self.shards)} shards have no index files (written "
                          "before orbitset wrote them): each process scans a shard's headers when it first reads it; "
                          + INDEX_HINT, stacklevel=3)
        #: Object key -> symmetry record (`orbitset.symmetry.records`), added to batches as ``symmetry`` when asked.
        self._symmetry = records_for_loader(source, [s.location for s in self.shards]) if symmetry else None
        #: This process's readers (for `_first_object`); workers and the inline stream have their own.
        self._main = WorkerState(self._shard_set)
        #: Made at the first iteration, once the subclass has set everything the workers need.
        self._stream: BatchStream | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (spawned workers receive the loader): this process's readers and stream stay behind."""
        state = dict(self.__dict__)
        del state["_main"]
        state["_stream"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._main = WorkerState(self._shard_set)

    def _first_object(self) -> ObjectFields:
        """The first object of the first shard that opens (read in the main process: only that shard is opened)."""
        reason = "no shard holds an object"
        for position, count in enumerate(self._shard_set.counts):
            if count:
                try:
                    return self._main.object(position, 0)
                except SKIPPED_ERRORS as exc:
                    if self.on_error == "raise":
                        raise
                    reason = str(exc)
        raise ShardError(f"no readable objects in the {len(self.shards)} shard(s) of this source (last: {reason})")

    # --- plan, length, state ---------------------------------------------------------------------------------

    def plan(self, epoch: int) -> list[list[Item]]:
        """This rank's batches of `epoch`, as items (`orbitset.loaders.plan`): from the object counts alone."""
        objects = rank_objects(
            self._shard_set.counts, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size,
            shuffle=self.shuffle, drop_last=self.drop_last, resampled=self.resampled, window=self.shuffle_window,
        )
        return make_batches(objects, self.per_object, self.batch_size, self.drop_last)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        total = sum(self._shard_set.counts)
        per_rank = total // self.world_size if self.drop_last else -(-total // self.world_size)
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
                raise UsageError(
                    f"cannot resume: the saved loader state has {name}={state[name]} but this loader has "
                    f"{getattr(self, name)}; use the same {name} to reproduce the interrupted epoch"
                )
        self.epoch, self._batches_done, self.skipped = int(state["epoch"]), int(state["batches_done"]), int(state["skipped"])

    # --- iteration (main process) ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, start = self.epoch, self._batches_done
        if start == 0:
            self.skipped, self._skip_messages = 0, []
            self._note_skip(self._shard_set.unplanned)
        total = len(self)  # the plan's length, the same every epoch (and on every rank)
        if self._stream is None:
            self._stream = self._open_stream()
        finished = False
        try:
            raw_batches = islice(self._stream.batches(epoch, start), total - start)
            for batch in on_device(raw_batches, self._finalize, self.device):
                self._batches_done += 1
                if batch is not None:
                    yield batch
            finished = True
        finally:
            # the stream goes on with the next epoch's batches; stopped early (or on CUDA, one batch pulled ahead),
            # it is not where the next iteration starts: the next iteration restarts it
            self._stream.continues_at = (epoch + 1, 0) if finished else None
        if self._batches_done == total:
            self._end_epoch()

    def _open_stream(self) -> BatchStream:
        """The stream of this loader's batches, with the workers' shared buffers (made before they start) and a copy
        of this loader for them as a spawned worker would unpickle it: without the stream, so that no reference cycle
        holds the workers and dropping the loader stops them at once (torch's shutdown of a DataLoader freed by the
        garbage collector waits 5 s per worker)."""
        buffers = self._batch_buffers() if self.num_workers else None
        twin = object.__new__(type(self))
        twin.__setstate__(self.__getstate__())
        return BatchStream(twin, twin._shard_set, buffers, num_workers=self.num_workers, prefetch_factor=self.prefetch_factor,
                           pin_memory=self.device.type == "cuda", multiprocessing_context=self.multiprocessing_context)

    def _batch_buffers(self) -> BatchBuffers | None:
        """Reusable shared buffers for the workers' batches (image loaders), made before the workers start."""
        return None

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

    def _finalize(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """Main-process side of a batch: count skips, numeric arrays to tensors on the device (subclasses add images)."""
        self._note_skip(raw.pop("_skipped"))
        if raw.pop("_empty", False):
            return None
        batch = {k: torch.from_numpy(v).to(self.device, non_blocking=True) if isinstance(v, np.ndarray) else v
                 for k, v in raw.items()}
        if self._symmetry is not None:
            batch["symmetry"] = [self._symmetry.get(key) for key in batch["key"]]
        if self.exact_fields:
            derived = self._derived(batch)
            for name in self.exact_fields:
                exact = batch.pop(name, None)
                if exact is not None and name[0] != "_":
                    batch[name] = exact.float()
            batch.update({name: value.float() for name, value in derived.items()})
        return batch

    # --- worker side ---------------------------------------------------------------------------------------------

    def make_batch(self, items: list[Item], epoch: int, state: WorkerState) -> dict[str, Any]:
        """Read and collate one batch with `state` (the process's readers and buffers); skipped objects are listed
        under ``_skipped``."""
        records: list[tuple] = []
        skipped: list[str] = []
        for (position, ordinal), group in groupby(items, key=itemgetter(0, 1)):
            subs = [item[2] for item in group]
            try:
                records.extend(self._read_object(state.object(position, ordinal), subs, epoch))
            except SKIPPED_ERRORS as exc:
                if self.on_error == "raise":
                    raise
                skipped.extend([str(exc)] * len(subs))
        if not records:
            return {"_skipped": skipped, "_empty": True}
        columns = dict(zip(self.record_fields, zip(*records)))
        images, kept = self._collect_images(columns, state, skipped)
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

    def _collect_images(self, columns: dict[str, Sequence], state: WorkerState,
                        skipped: list[str]) -> tuple[dict[str, Any], list[int]]:
        """(image fields of the batch, the rows of the records whose images are readable); image loaders decode here
        (runs in a worker, into its buffers), adding a message to `skipped` per record dropped (on_error="skip")."""
        return {}, list(range(len(columns["key"])))

    def _collate(self, columns: dict[str, Sequence]) -> dict[str, Any]:
        """Stack the records' columns: numeric fields to numpy arrays (floats as float32, but `exact_fields` at stored
        precision), ``key`` to a list; other ``_`` fields are left out. Workers hand numpy arrays over pickled, in the
        batch's one message: a tensor would cost a shared-memory file and a file-descriptor exchange each."""
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
