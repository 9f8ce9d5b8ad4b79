"""The CPU decoder: libjpeg-turbo through simplejpeg, pixel for pixel what Pillow gives, into the caller's array."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from orbitset.loaders.decode import ImageDecodeError, ImageShapeError, decode_cpu, decoded_shape


def encode(pixels: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pillow(data: bytes, size: int | None) -> np.ndarray:
    """Pillow's reading: draft (reduced DCT scale) when `size` is at most half the side, then a bilinear resize."""
    with Image.open(io.BytesIO(data)) as image:
        if size is not None and image.format == "JPEG" and 2 * size <= min(image.size):
            image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96 x 128 image with gradients and edges (so that every DCT scale and the chroma upsampling matter)."""
    y, x = np.mgrid[0:96, 0:128]
    rgb = np.stack([x * 2, y * 2 + (x // 16) * 9, ((x - 64) ** 2 + (y - 48) ** 2) % 256], axis=-1)
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("size", [None, 12, 24, 40, 48, 60, 96])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_pixels_equal_pillows(photo, size, subsampling):
    data = encode(photo, quality=90, subsampling=subsampling)
    expected = pillow(data, size)
    np.testing.assert_array_equal(decode_cpu(data, size), expected)
    np.testing.assert_array_equal(decode_cpu(data, size, bgr=True), expected[..., ::-1])
    assert decoded_shape(data, size) == expected.shape[:2]


def test_decodes_into_the_given_array(photo):
    data = encode(photo, quality=90)
    out = np.zeros((96, 128, 3), np.uint8)
    result = decode_cpu(data, None, out=out)
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, pillow(data, None))
    resized = np.zeros((24, 24, 3), np.uint8)
    decode_cpu(data, 24, bgr=True, out=resized)
    np.testing.assert_array_equal(resized, pillow(data, 24)[..., ::-1])
    with pytest.raises(ImageShapeError, match="128x96 pixels, not the 24x24"):
        decode_cpu(data, None, out=resized)


def test_other_formats_go_through_pillow(photo):
    png = encode(photo, "PNG")
    np.testing.assert_array_equal(decode_cpu(png, None), photo)
    np.testing.assert_array_equal(decode_cpu(png, 32), pillow(png, 32))
    gray = encode(photo[..., 0], quality=90)
    np.testing.assert_array_equal(decode_cpu(gray, None), pillow(gray, None))
    assert decoded_shape(png) == (96, 128)


def test_corrupt_jpegs_raise(photo):
    data = encode(photo, quality=90)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_cpu(data[: len(data) // 2], None)  # truncated: libjpeg's "premature end" is an error, not grey pixels
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_cpu(b"\xff\xd8\xff" + bytes(200), None)
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_cpu(data[: len(data) // 2], 24)  # the reduced-scale path
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decoded_shape(b"not an image")
