"""ImageLoader: the base of the loaders whose items carry view images (decoding, resizing, channels, normalisation)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from orbitset.errors import OrbitsetError, ShardError, UsageError
from orbitset.loaders.buffers import BatchBuffers
from orbitset.loaders.decode import (
    GpuJpegDecoder,
    ImageDecodeError,
    ImageShapeError,
    decode_cpu,
    decoded_shape,
    normalize,
    normalize_hwc,
    to_channels_first,
)
from orbitset.loaders.loader import SKIPPED_ERRORS, ObjectLoader
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.sources import Source
from orbitset.loaders.stream import BatchStream, WorkerState

#: The last fields of an image loader's records (`ImageLoader._image_record`).
IMAGE_FIELDS = ("_images", "_bgr", "_object", "_views")
DECODE_MODES = ("auto", "cpu", "gpu")


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
        if decode not in DECODE_MODES:
            raise UsageError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
        if size is not None and size < 1:
            raise UsageError(f"size must be a positive number of pixels or None, got {size}")
        self.size, self.normalize, self.dtype = size, normalize, dtype
        self.channels_last, self.fix_channels, self.decode = channels_last, fix_channels, decode
        super().__init__(source, batch_size, **kwargs)
        gpu_backend = GpuJpegDecoder.available_backend() if self.device.type == "cuda" and decode != "cpu" else None
        if decode == "gpu" and gpu_backend is None:
            raise OrbitsetError(
                "decode='gpu' needs device='cuda' and one of torchvision, nvidia-nvimgcodec or torchcodec installed"
            )
        #: Whether workers pass JPEG bytes on, for the main process's GPU decoder (made with the stream).
        self._decode_on_gpu = gpu_backend is not None
        self._gpu_decoder: GpuJpegDecoder | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_gpu_decoder"] = None
        return state

    def _open_stream(self) -> BatchStream:
        if self._decode_on_gpu and self._gpu_decoder is None:
            self._gpu_decoder = GpuJpegDecoder(self.device)
        return super()._open_stream()

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
            except (*SKIPPED_ERRORS, ImageDecodeError):
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

    def _collect_images(self, columns: dict[str, Sequence], state: WorkerState,
                        skipped: list[str]) -> tuple[dict[str, Any], list[int]]:
        images, bgrs, objects, views = (columns[name] for name in IMAGE_FIELDS)
        count, slots = len(images), len(images[0])
        if self._decode_on_gpu:
            return {"_jpeg": [images[r][s] for s in range(slots) for r in range(count)],
                    "_jpeg_bgr": [bgrs[r] for _ in range(slots) for r in range(count)],
                    "_jpeg_what": [f"{objects[r].where()} view {views[r][s]}" for s in range(slots) for r in range(count)],
                    "_slots": slots}, list(range(count))
        height, width = self._pixel_shape(images)
        shape = (count, slots, height, width, 3) if self.images_by_record else (slots, count, height, width, 3)
        slot, pixels = state.pixels(shape)
        array, size, by_record = pixels.numpy(), self.size, self.images_by_record
        kept: list[int] = []
        for record, (blobs, bgr) in enumerate(zip(images, bgrs)):
            row = len(kept)
            try:
                for s, blob in enumerate(blobs):
                    try:
                        decode_cpu(blob, size, bgr, array[(row, s) if by_record else (s, row)])
                    except (ImageDecodeError, ImageShapeError) as exc:
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
            state.release(slot)
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
            except ImageDecodeError:  # decoding reports it, naming the view
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
        buffers = self._stream.buffers
        as_they_are = not self.normalize and self.channels_last and self.device.type == "cpu"
        if slot is not None and as_they_are:  # no copy: the buffer is released when the user's tensors are freed
            pixels, slot = buffers.hand_out(*slot, pixels), None
        try:
            if slot is not None:
                pixels = buffers.view(*slot, pixels)
            if self.device.type == "cuda":
                if slot is not None:  # stage in pinned memory (the pin-memory thread only saw the buffer's number)
                    pixels = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True).copy_(pixels)
                pixels = pixels.to(self.device, non_blocking=True)
            images = self._from_hwc(pixels)
        finally:
            if slot is not None:
                buffers.release(*slot)
        return images.transpose(0, 1) if self.images_by_record else images

    def _from_hwc(self, pixels: torch.Tensor) -> torch.Tensor:
        """(A, B, H, W, 3) contiguous uint8 -> (A, B, 3, H, W), uint8 or normalised, in the requested memory layout
        (a view of `pixels` only for uint8 channels-last)."""
        if self.normalize:
            return normalize_hwc(pixels, self.dtype, self.channels_last)
        return pixels.movedim(-1, -3) if self.channels_last else to_channels_first(pixels)


def _decode_error(exc: ImageDecodeError | ImageShapeError, what: str) -> OrbitsetError:
    """The error for a view that failed to decode: ShardError (skippable) for corrupt bytes, a UsageError when the
    image has another size than the batch's (`size=` fixes it, skipping would not)."""
    if isinstance(exc, ImageShapeError):
        return UsageError(f"{what}: {exc}; views of different sizes cannot share a batch: pass size= to resize them "
                          f"to one side")
    return ShardError(f"{what}: {exc}; the shard is corrupt")
