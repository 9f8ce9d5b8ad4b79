"""Shared-memory batch buffers that loader workers reuse, so that no batch pays for fresh shared memory.

A fresh shared-memory block per batch (torch's default for tensors made in a worker) costs a page fault and zeroing
per page, which for a batch of images is several times the cost of filling a buffer whose pages are already
mapped. `BatchBuffers` holds `per_worker` buffers per worker in one shared block made in the main process before the
workers start (forked workers inherit it; spawned ones receive it as a shared-memory handle). A worker claims a free
buffer of its own, decodes into it and sends only its number; the main process reads the pixels from its own mapping
of the same memory and either releases the buffer at once, after copying or normalising them out, or hands the
pixels to the user as they are (`hand_out`): the buffer is then released when the last tensor viewing it is freed.

Ownership: one state per buffer, FREE, CLAIMED (by its worker: being filled or on its way) or HANDED_OUT (to the
user). Only worker w claims buffers of row w (and frees a claim when its batch has nothing to send); only the main
process marks sent buffers handed out or free. When a worker finds none free (the user keeps many batches, or a
batch is larger than the buffers) it falls back to a fresh block: it never waits. At the start of each iteration a
worker frees its CLAIMED buffers: torch's DataLoader, before persistent workers start a new iteration, has received
every batch of the previous one, and those it did not deliver (iteration stopped early) it discarded unread;
HANDED_OUT buffers stay busy until the user's tensors are gone.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

#: Buffers beyond this many bytes in all are not preallocated (e.g. all-views batches): batches use fresh blocks.
MAX_TOTAL_BYTES = 1 << 30
FREE, CLAIMED, HANDED_OUT = 0, 1, 2


def shared_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor allocated straight in shared memory (nothing copied, no page touched)."""
    storage = torch.UntypedStorage._new_shared(max(1, math.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)


class BatchBuffers:
    """`per_worker` reusable shared uint8 buffers of `nbytes` for each of `workers` workers (see the module docstring)."""

    def __init__(self, workers: int, per_worker: int, nbytes: int):
        self.nbytes = nbytes
        self.data = shared_uint8((workers, per_worker, nbytes))
        self.busy = shared_uint8((workers, per_worker))
        self.busy.zero_()

    @classmethod
    def for_batches(cls, workers: int, per_worker: int, nbytes: int) -> BatchBuffers | None:
        """Buffers for batches of `nbytes`, or None when they would exceed `MAX_TOTAL_BYTES` in all."""
        if workers < 1 or nbytes * workers * per_worker > MAX_TOTAL_BYTES:
            return None
        return cls(workers, per_worker, nbytes)

    def claim(self, worker: int, shape: tuple[int, ...]) -> tuple[tuple[int, int], torch.Tensor] | None:
        """(slot, uint8 tensor of `shape` in a free buffer of `worker`), marked busy; None if none fits or is free."""
        if math.prod(shape) > self.nbytes:
            return None
        free = np.flatnonzero(self.busy[worker].numpy() == FREE)
        if len(free) == 0:
            return None
        slot = int(free[0])
        self.busy[worker, slot] = CLAIMED
        return (worker, slot), self.view(worker, slot, shape)

    def view(self, worker: int, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        """The first prod(`shape`) bytes of buffer (`worker`, `slot`) as a uint8 tensor of `shape`."""
        return self.data[worker, slot, : math.prod(shape)].view(shape)

    def hand_out(self, worker: int, slot: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Main process: the pixels of buffer (`worker`, `slot`) as a tensor for the user, without a copy; the buffer
        is released when that tensor and every view of it have been freed."""
        self.busy[worker, slot] = HANDED_OUT
        # torch.from_numpy keeps `pixels` (a fresh ndarray object) alive exactly as long as the tensor's memory
        pixels = self.data[worker, slot, : math.prod(shape)].numpy().reshape(shape)
        finalizer = weakref.finalize(pixels, self.release, worker, slot)
        finalizer.atexit = False
        return torch.from_numpy(pixels)

    def release(self, worker: int, slot: int) -> None:
        """Main process: the pixels of this buffer have been copied out or freed; the worker may fill it again."""
        self.busy[worker, slot] = FREE

    def reset(self, worker: int) -> None:
        """Worker, at the start of an iteration: its buffers that never reached the user are free again."""
        states = self.busy[worker]
        states[states == CLAIMED] = FREE
