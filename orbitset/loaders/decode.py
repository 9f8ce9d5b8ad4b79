"""Image decoding for the loaders: libjpeg-turbo on the CPU (reduced-size JPEG decoding), nvJPEG on the GPU,
normalisation.

CPU: JPEGs are decoded by libjpeg-turbo through simplejpeg, straight into the caller's array (a worker's batch
buffer): one C call per image, no intermediate image object and no copy (Pillow's per-image Python work and its
RGBX-to-RGB repacking cost more than the decoding itself), with pixels identical to Pillow's. When the requested side is at most half the stored one, JPEGs are decoded at a reduced DCT scale
(1/2, 1/4 or 1/8, never below the requested size) before the exact resize, which is several times cheaper than
decoding at full size. Pillow decodes everything else (PNG, CMYK JPEGs) and does the resizing.

GPU: batches of JPEG bytes are decoded on the device by whichever is installed of torchvision
(``torchvision.io.decode_jpeg(device="cuda")``), nvidia nvImageCodec or TorchCodec; an image the GPU decoder rejects
is decoded on the CPU and copied over. Resizing on the GPU is bilinear with antialiasing, like Pillow's.

Channel order: samples whose ``meta.json`` says ``"channel_order": "bgr"`` (the original 3DIEBench JPEGs, written by
OpenCV from an RGB array, have red and blue swapped) are swapped back at decode time, which costs nothing.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
import torch

from orbitset.errors import OrbitsetError, ShardError, UsageError

#: 3DIEBench's normalisation (per RGB channel, on [0, 1] pixel values).
MEAN_3DIEBENCH = (0.5016, 0.5037, 0.5060)
STD_3DIEBENCH = (0.1030, 0.0999, 0.0969)


class ImageShapeError(UsageError):
    """An image decodes to another shape than the array given to hold it."""


class ImageDecodeError(OrbitsetError):
    """Encoded image bytes that no decoder can read (corrupt, truncated or not an image)."""


#: What libjpeg-turbo (through simplejpeg) and Pillow raise on data they cannot decode.
_LIBRARY_ERRORS = (ValueError, OSError, SyntaxError, EOFError)


def _cannot_decode(exc: BaseException) -> ImageDecodeError:
    return ImageDecodeError(f"cannot decode the image ({type(exc).__name__}: {exc})")


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decoded_shape(data: bytes, size: int | None = None) -> tuple[int, int]:
    """(H, W) of the pixels `decode_cpu` returns for `data` (read from the header only); ImageDecodeError when the
    header cannot be read."""
    if size is not None:
        return size, size
    if _is_jpeg(data):
        import simplejpeg

        try:
            return tuple(simplejpeg.decode_jpeg_header(data)[:2])  # type: ignore[return-value]
        except ValueError:
            pass  # left to Pillow, which reads more JPEG variants
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.height, image.width
    except _LIBRARY_ERRORS as exc:
        raise _cannot_decode(exc) from exc


def decode_cpu(data: bytes, size: int | None, bgr: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Encoded image -> (H, W, 3) uint8 RGB array, resized to (size, size) when `size` is given; `bgr` swaps red and
    blue back (stored BGR data comes out RGB). With `out` (a contiguous (H, W, 3) uint8 array of the output shape),
    the pixels are written there and `out` is returned; a wrong shape raises `ImageShapeError`.

    JPEGs go to libjpeg-turbo through simplejpeg, which decodes straight into `out` (no intermediate image) and, when
    `size` is at most half the stored side, at a reduced DCT scale (1/2, 1/4 or 1/8, never below `size`) before the
    exact bilinear resize. Other formats, and JPEGs simplejpeg rejects (e.g. CMYK), go through Pillow. Corrupt or
    truncated data raises ImageDecodeError."""
    import simplejpeg  # a dependency of the loaders, imported where used: `import orbitset.loaders` stays light

    jpeg, order = _is_jpeg(data), "BGR" if bgr else "RGB"
    if jpeg and size is None and out is not None:  # the loaders' common case: one call
        try:
            decoded = simplejpeg.decode_jpeg(data, colorspace=order, buffer=out)
        except ValueError:  # corrupt, larger than `out`, or CMYK: the path below tells which
            decoded = None
        if decoded is not None and decoded.shape == out.shape:
            return out
    pixels = None
    if jpeg:
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data, min_height=size or 0, min_width=size or 0,
                                                                       min_factor=2 if size else 1)
        except ValueError:
            colorspace = None
        if colorspace in ("Gray", "YCbCr", "RGB"):
            scale = {"min_height": size, "min_width": size, "min_factor": 2} if size else {}
            try:
                if out is not None and (height, width, 3) == out.shape:
                    simplejpeg.decode_jpeg(data, colorspace=order, buffer=out, **scale)
                    return out
                pixels = simplejpeg.decode_jpeg(data, colorspace=order, **scale)
            except ValueError as exc:
                raise _cannot_decode(exc) from exc
    if pixels is None:
        pixels = decode_pillow(data, size, bgr)
    if size is not None and pixels.shape[:2] != (size, size):
        from PIL import Image

        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
    if out is None:
        return pixels
    if out.shape != pixels.shape:
        raise ImageShapeError(f"the image decodes to {pixels.shape[1]}x{pixels.shape[0]} pixels, not the "
                              f"{out.shape[1]}x{out.shape[0]} expected")
    out[...] = pixels
    return out


def decode_pillow(data: bytes, size: int | None, bgr: bool = False) -> np.ndarray:
    """Pillow's decoding (any format it reads), at a reduced JPEG DCT scale when `size` is at most half the image;
    ImageDecodeError for data Pillow cannot read."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if size is not None and image.format == "JPEG" and 2 * size <= min(image.size):
                image.draft("RGB", (size, size))
            rgb = image.convert("RGB") if image.mode != "RGB" else image
            array = np.asarray(rgb)
    except (*_LIBRARY_ERRORS, Image.DecompressionBombError) as exc:
        raise _cannot_decode(exc) from exc
    return array[..., ::-1] if bgr else array


#: Values per chunk of CPU normalisation (about 100 KB of float32: stays in a core's L2 cache).
_CHUNK_VALUES = 1 << 15
_NUMPY_FLOATS = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _scale_shift(dtype: torch.dtype, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) with normalised = pixel * scale + shift (3DIEBench's mean and std on [0, 1] values)."""
    scale = 1 / (torch.tensor(STD_3DIEBENCH, dtype=torch.float64) * 255)
    shift = -torch.tensor(MEAN_3DIEBENCH, dtype=torch.float64) * 255 * scale
    return scale.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype)


def normalize(pixels: torch.Tensor, channel_dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> `dtype`, normalised with 3DIEBench's mean and std; `channel_dim` is where the 3 channels are.
    Torch passes on the tensor's device (meant for devices: see `normalize_hwc` for CPU batches); keeps the layout."""
    shape = [1] * pixels.dim()
    shape[channel_dim] = 3
    scale, shift = _scale_shift(dtype, pixels.device)
    out = pixels.to(dtype)
    return out.mul_(scale.view(shape)).add_(shift.view(shape))


def normalize_hwc(pixels: torch.Tensor, dtype: torch.dtype = torch.float32, channels_last: bool = True) -> torch.Tensor:
    """(..., H, W, 3) contiguous uint8 -> (..., 3, H, W) `dtype` normalised as 3DIEBench, in channels-last memory
    (a permuted view of a (..., H, W, 3) array) or, with ``channels_last=False``, contiguous.

    On the CPU two numpy passes (multiply converting as it reads, then add in place) over rows of W pixels, with the
    per-channel scale and shift tiled along the row: the inner loops are long and vectorised (broadcasting a 3-vector
    over the last axis is several times slower); channels-first output is written channel by channel from strided reads.
    Elsewhere (CUDA) torch's passes on the device. CPU outputs are allocated by numpy, which asks Linux for
    transparent huge pages on large arrays: a fresh output then costs one page fault per 2 MB, not per 4 KB.
    """
    if pixels.shape[-1] != 3 or not pixels.is_contiguous():
        raise UsageError(f"expected contiguous (..., H, W, 3) pixels, got shape {tuple(pixels.shape)}")
    if pixels.device.type != "cpu" or dtype not in _NUMPY_FLOATS:
        if channels_last:
            return normalize(pixels, -1, dtype).movedim(-1, -3)
        return normalize(pixels.movedim(-1, -3).contiguous(), -3, dtype)
    scale, shift = (v.numpy().astype(_NUMPY_FLOATS[dtype]) for v in _scale_shift(torch.float64))
    source = pixels.numpy()
    *lead, height, width, _ = source.shape
    if channels_last:
        target = np.empty(source.shape, _NUMPY_FLOATS[dtype])
        rows, pixel_rows = target.reshape(-1, width * 3), source.reshape(-1, width * 3)
        row_scale, row_shift = np.tile(scale, width), np.tile(shift, width)
        step = max(1, _CHUNK_VALUES // (width * 3))  # the add pass re-reads what the multiply wrote while still cached
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            np.multiply(pixel_rows[start : start + step], row_scale, out=chunk)
            np.add(chunk, row_shift, out=chunk)
        return torch.from_numpy(target).movedim(-1, -3)
    target = np.empty((*lead, 3, height, width), _NUMPY_FLOATS[dtype])
    for channel in range(3):
        plane = target[..., channel, :, :]
        np.multiply(source[..., channel], scale[channel], out=plane)
        np.add(plane, shift[channel], out=plane)
    return torch.from_numpy(target)


def to_channels_first(pixels: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> contiguous (..., 3, H, W) (on the CPU into numpy-allocated memory: huge pages)."""
    if pixels.device.type != "cpu":
        return pixels.movedim(-1, -3).contiguous()
    target = np.empty((*pixels.shape[:-3], 3, *pixels.shape[-3:-1]), np.uint8)
    target[...] = pixels.numpy().transpose(*range(pixels.dim() - 3), -1, -3, -2)
    return torch.from_numpy(target)


def _torchvision_decoder() -> Callable | None:
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except (ImportError, OSError, RuntimeError):  # absent or broken install
        return None

    def decode(blobs: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad image fails the whole call: retry one by one
            out: list[torch.Tensor | None] = []
            for tensor in tensors:
                try:
                    out.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out

    return decode


def _nvimagecodec_decoder() -> Callable | None:
    try:
        from nvidia import nvimgcodec
    except (ImportError, OSError, RuntimeError):  # absent or broken install
        return None
    decoder = nvimgcodec.Decoder()

    def decode(blobs: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
        stream = torch.cuda.current_stream(device).cuda_stream
        images = decoder.decode(list(blobs), cuda_stream=stream)
        # HWC RGB images in device memory owned by nvImageCodec: copy them into torch tensors
        return [None if im is None else torch.as_tensor(im, device=device).permute(2, 0, 1).clone() for im in images]

    return decode


def _torchcodec_decoder() -> Callable | None:
    try:
        from torchcodec.decoders import decode_jpeg
    except (ImportError, OSError, RuntimeError):  # absent or broken install
        return None

    def decode(blobs: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for blob in blobs:
            try:
                out.append(decode_jpeg(torch.frombuffer(bytearray(blob), dtype=torch.uint8), device=device))
            except (RuntimeError, ValueError):
                out.append(None)
        return out

    return decode


_BACKENDS = {"torchvision": _torchvision_decoder, "nvimagecodec": _nvimagecodec_decoder, "torchcodec": _torchcodec_decoder}


class GpuJpegDecoder:
    """Batched JPEG decoding on a CUDA device with the first available backend, Pillow as fallback per image."""

    def __init__(self, device: torch.device | str, backend: str | None = None):
        self.device = torch.device(device)
        names = [backend] if backend else list(_BACKENDS)
        self.backend, self._decode = None, None
        for name in names:
            decode = _BACKENDS[name]()
            if decode is not None:
                self.backend, self._decode = name, decode
                break
        self.fallbacks = 0

    @staticmethod
    def available_backend() -> str | None:
        """Name of the first installed GPU JPEG backend, or None."""
        for name, make in _BACKENDS.items():
            if make() is not None:
                return name
        return None

    def decode(self, blobs: list[bytes], size: int | None, bgr: list[bool], what: list[str]) -> torch.Tensor:
        """JPEG bytes -> (N, 3, H, W) uint8 on the device, resized to `size`; `what` names each image for errors."""
        decoded = self._decode(blobs, self.device) if self._decode is not None else [None] * len(blobs)
        images = []
        for index, image in enumerate(decoded):
            if image is None or image.dim() != 3 or image.shape[0] != 3:
                self.fallbacks += 1
                try:
                    array = decode_cpu(blobs[index], None)
                except ImageDecodeError as exc:
                    raise ShardError(f"{what[index]}: {exc}; the shard is corrupt") from exc
                image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).to(self.device, non_blocking=True)
            if bgr[index]:
                image = image.flip(0)
            images.append(resize_gpu(image, size))
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise UsageError(f"images of different sizes {sorted(shapes)} in one batch; pass size= to resize them to one side")
        return torch.stack(images)


def resize_gpu(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size) uint8 by antialiased bilinear resizing (unchanged when already that size)."""
    if size is None or tuple(image.shape[1:]) == (size, size):
        return image
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)
