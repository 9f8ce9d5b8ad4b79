"""3DIEBench object folders read by `sie_layout`: paths recognised at any depth, every latent file checked."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from orbitset.datasets.sie_layout import LAYOUTS, ObjectFiles, build_samples, view_file
from orbitset.errors import OrbitsetError

JPEG = b"\xff\xd8\xff\xe0" + bytes(16)  # only the magic is checked before the header is read


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("SYN/OBJ/image_3.jpg", ("SYN", "OBJ", "image_3.jpg")),
        ("root/deeper/SYN/OBJ/latent_0.npy", ("SYN", "OBJ", "latent_0.npy")),
        ("/SYN/OBJ/image_0.jpg", ("SYN", "OBJ", "image_0.jpg")),
        ("root//SYN/OBJ/image_0.jpg", ("SYN", "OBJ", "image_0.jpg")),
        ("SYN//OBJ/image_0.jpg", ("SYN", "OBJ", "image_0.jpg")),
        ("root\\SYN\\OBJ\\image_1.jpg", ("SYN", "OBJ", "image_1.jpg")),
        ("a/SYN\\OBJ/image_1.jpg", ("SYN", "OBJ", "image_1.jpg")),
        ("OBJ/image_0.jpg", None),
        ("SYN/OBJ/", None),
        ("SYN/OBJ/README.md", None),
        ("", None),
    ],
)
def test_view_file_finds_the_last_three_parts(path, expected):
    assert view_file(path) == expected


def npy(values) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(values), allow_pickle=False)
    return buffer.getvalue()


def folder(latents: list[bytes]) -> ObjectFiles:
    files = {f"image_{i}.jpg": JPEG for i in range(len(latents))}
    files.update({f"latent_{i}.npy": data for i, data in enumerate(latents)})
    return ObjectFiles("02691156", "obj", 0, files)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (npy(np.zeros(6)), r"latent_2.npy has shape \(6,\)"),
        (npy(np.zeros(7, dtype=np.int64)), "latent_2.npy has shape .* dtype int64"),
        (npy(np.zeros(7))[:-8], "latent_2.npy"),  # same header, payload cut short
        (npy(np.zeros(7))[:40] + b"junk" + npy(np.zeros(7))[44:], "latent_2.npy"),  # header damaged
    ],
)
def test_every_latent_file_is_checked_not_only_the_first(bad, message):
    good = npy(np.arange(7.0))
    [result] = build_samples(LAYOUTS["3diebench"], [folder([good, good, bad])], 3)
    assert isinstance(result, OrbitsetError)
    assert re.search(message, str(result))


def test_latents_of_mixed_encodings_are_read_as_numpy_reads_them():
    values = np.random.default_rng(0).uniform(-1, 1, (4, 7))
    latents = [npy(values[0]), npy(values[1]), npy(values[2].astype(">f8")), npy(values[3].astype(np.float32))]
    table = np.stack([np.load(io.BytesIO(data)) for data in latents]).astype(np.float64)
    image = io.BytesIO()
    Image.new("RGB", (8, 6)).save(image, format="JPEG")  # the sample reads its size from the first image
    files = {**folder(latents).files, **{f"image_{i}.jpg": image.getvalue() for i in range(4)}}
    [sample] = build_samples(LAYOUTS["3diebench"], [ObjectFiles("02691156", "obj", 0, files)], 4)
    np.testing.assert_array_equal(sample.latents, table)
