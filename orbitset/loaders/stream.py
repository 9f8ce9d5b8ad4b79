"""The workers' stream of batches: what each process reads with, the epochs the workers walk, the hand-over.

A loader hands whole batches round-robin to torch DataLoader workers that persist across epochs (`BatchStream`).
Each worker walks the epochs' plans itself from a shared cursor (`EpochBatches`), reading with its own `WorkerState`
(made once, when the worker starts), and sends each batch as it made it (`as_made`). The main process finalises the
batches on the device (`on_device`): on CUDA one batch ahead, on a side stream. The stream drives its loader only
through `BatchMaker`: the epoch's plan and the making of one batch.
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from orbitset.errors import ShardError
from orbitset.loaders.buffers import BatchBuffers, shared_uint8
from orbitset.loaders.objects import ObjectCache, ObjectFields, ReaderCache, ShardSet
from orbitset.loaders.plan import Item
from orbitset.shards import ShardReader

#: A batch buffer: (worker, slot) in `BatchBuffers`.
Slot = tuple[int, int]


class WorkerState:
    """What one process reads and decodes with, made once per process: its own shard readers (file handles are never
    shared between processes; each shard is opened, its offsets read, when this process first reads from it) and
    cache of object handles, kept across epochs; in a worker, also its number and the shared buffers it decodes
    batches into (`orbitset.loaders.buffers`). `worker` is None in the main process."""

    def __init__(self, shards: ShardSet, worker: int | None = None, buffers: BatchBuffers | None = None):
        self.shards, self.worker, self.buffers = shards, worker, buffers
        self.readers = ReaderCache()
        #: Why each shard this process could not open failed (it is not tried again).
        self.failed: dict[int, str] = {}
        self._fetcher: ThreadPoolExecutor | None = None
        self._fetching: set[int] = set()
        self.cache = ObjectCache()
        # the files close when this state goes, even when its handles outlive it in a reference cycle
        weakref.finalize(self, self.readers.close)

    def object(self, position: int, ordinal: int) -> ObjectFields:
        """Object `ordinal` of shard `position`, cached with its parsed fields; ShardError for an unreadable shard."""
        obj = self.cache.find((position, ordinal))
        if obj is None:
            obj = self.cache.add((position, ordinal), ObjectFields(self.reader(position), ordinal))
        return obj

    def prefetch(self, positions: Iterable[int]) -> None:
        """Fetch the remote shards among `positions` into the cache in the background (two threads), if they are not
        open or on their way already: they are what this process reads next."""
        for position in positions:
            if (position in self._fetching or position in self.readers or position in self.failed
                    or not self.shards.refs[position].remote):
                continue
            if self._fetcher is None:
                self._fetcher = ThreadPoolExecutor(2, thread_name_prefix="orbitset-fetch")
            self._fetching.add(position)
            future = self._fetcher.submit(self.shards.fetch, position)
            future.add_done_callback(lambda _, done=position: self._fetching.discard(done))

    def reader(self, position: int) -> ShardReader:
        """The reader of shard `position`, opened on first use; ShardError (the same each time) if it cannot be."""
        if position in self.failed:
            raise ShardError(self.failed[position])
        try:
            return self.readers.get(position, self.shards.open_reader)
        except ShardError as exc:
            self.failed[position] = str(exc)
            raise

    def pixels(self, shape: tuple[int, ...]) -> tuple[Slot | None, torch.Tensor]:
        """(buffer slot or None, uninitialised uint8 tensor of `shape`) to decode a batch's images into: a free buffer
        of this worker, else fresh shared memory (handing it over copies nothing, as torch's default_collate), else,
        in the main process, numpy's memory (transparent huge pages: a few dozen page faults, not thousands)."""
        claimed = self.buffers.claim(self.worker, shape) if self.buffers is not None and self.worker is not None else None
        if claimed is not None:
            return claimed
        if self.worker is not None:
            return None, shared_uint8(shape)
        return None, torch.from_numpy(np.empty(shape, np.uint8))

    def release(self, slot: Slot) -> None:
        """Give back a claimed buffer whose batch will not be sent."""
        self.buffers.release(*slot)

    def start_iteration(self) -> None:
        """A new iteration starts: this worker's buffers that never reached the user are free again."""
        if self.buffers is not None and self.worker is not None:
            self.buffers.reset(self.worker)


class BatchMaker(Protocol):
    """What the stream needs from a loader: its plan of an epoch (a list of batches of items, the same in every
    process) and the making of one batch from its items with a process's `WorkerState`."""

    def plan(self, epoch: int) -> list[list[Item]]: ...

    def make_batch(self, items: list[Item], epoch: int, state: WorkerState) -> dict[str, Any]: ...


class EpochBatches(torch.utils.data.IterableDataset):
    """The batches from the point named by the shared `cursor` (epoch, first batch) on: the rest of that epoch, then
    every following epoch, endlessly (the main process takes each epoch's batches in turn, so the workers never idle
    at an epoch's end). Worker w of W makes batches first + w, first + w + W, ... of that sequence. Each worker computes
    the (pure) plans itself, so persistent workers need no messages. `state` reads `shards` in the main process until
    `start_worker` gives each worker its own, which decodes into the worker's row of `buffers` (when given)."""

    def __init__(self, maker: BatchMaker, shards: ShardSet, cursor: torch.Tensor, buffers: BatchBuffers | None = None):
        self.maker, self.shards, self.cursor, self.buffers = maker, shards, cursor, buffers
        self.state = WorkerState(shards)
        #: Whether any shard is remote: only then does a worker look ahead at its next batch's shards.
        self.remote = any(ref.remote for ref in shards.refs)

    def start_worker(self, worker: int) -> None:
        """Runs once in each worker process, before its first batch."""
        self.state = WorkerState(self.shards, worker, self.buffers)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self.state.start_iteration()
        epoch, position = (int(v) for v in self.cursor)
        position += worker
        while True:
            batches = self.maker.plan(epoch)
            if not batches:
                return
            for index in range(position, len(batches), workers):
                if self.remote and index + workers < len(batches):  # its next batch's remote shards come meanwhile
                    self.state.prefetch(dict.fromkeys(item[0] for item in batches[index + workers]))
                yield self.maker.make_batch(batches[index], epoch, self.state)
            remaining = max(0, len(batches) - position)  # this worker's next batch, counted from the next epoch's start
            position += -(-remaining // workers) * workers - len(batches)
            epoch += 1


def start_worker(worker: int) -> None:
    """The DataLoader's worker_init_fn: the worker's own `WorkerState`."""
    torch.utils.data.get_worker_info().dataset.start_worker(worker)


def as_made(batch: dict[str, Any]) -> dict[str, Any]:
    """The DataLoader's collate function: batches pass as the workers made them (its default would turn every numpy
    array into a tensor in the worker, to be shared with the main process through a file descriptor each)."""
    return batch


class BatchStream:
    """The main process's end of a loader's stream of raw batches: a torch DataLoader over `EpochBatches` of `maker`
    (a picklable copy of the loader, sent to spawned workers) whose workers
    persist across epochs (one start only), the cursor that tells them where an iteration starts, and the running
    iteration with the point where it continues (`continues_at`: (epoch, batch), or None when it was stopped early)."""

    def __init__(self, maker: BatchMaker, shards: ShardSet, buffers: BatchBuffers | None, *, num_workers: int,
                 prefetch_factor: int, pin_memory: bool, multiprocessing_context: str | None):
        self.buffers = buffers
        self.cursor = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.data_loader = torch.utils.data.DataLoader(
            EpochBatches(maker, shards, self.cursor, buffers), batch_size=None, collate_fn=as_made,
            num_workers=num_workers, worker_init_fn=start_worker if num_workers else None, pin_memory=pin_memory,
            persistent_workers=num_workers > 0, prefetch_factor=prefetch_factor if num_workers else None,
            multiprocessing_context=multiprocessing_context if num_workers else None,
        )
        self.iterator: Iterator[dict[str, Any]] | None = None
        self.continues_at: tuple[int, int] | None = None

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        """Raw batches from batch `start` of `epoch` on, through the following epochs: the running iteration when it
        continues there (an epoch that follows a finished one: the workers have been making its first batches
        meanwhile), else a new one (the workers drop what they had made ahead)."""
        if self.iterator is not None and self.continues_at == (epoch, start):
            return self.iterator
        self.cursor[0], self.cursor[1] = epoch, start  # read by the workers when this iteration starts
        self.iterator = iter(self.data_loader)
        return self.iterator


def on_device(raw_batches: Iterator[dict[str, Any]], finalize: Callable[[dict[str, Any]], Any],
              device: torch.device) -> Iterator[Any]:
    """``finalize(raw)`` of each raw batch, in order; on CUDA one batch ahead on a side stream (pinned memory,
    non-blocking copies), each handed over to the current stream when it is yielded."""
    if device.type != "cuda":
        for raw in raw_batches:
            yield finalize(raw)
        return
    stream = torch.cuda.Stream(device)

    def prepare(raw):
        with torch.cuda.stream(stream):
            batch = finalize(raw)
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


def _hand_over(batch: dict[str, Any] | None, event: torch.cuda.Event) -> dict[str, Any] | None:
    """Make the current stream wait for a batch prepared on the side stream, and keep its memory alive there."""
    current = torch.cuda.current_stream()
    current.wait_event(event)
    if batch is not None:
        for value in batch.values():
            if isinstance(value, torch.Tensor) and value.is_cuda:
                value.record_stream(current)
    return batch
