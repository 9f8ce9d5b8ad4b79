"""The object-sample format: round trips, and a clear SchemaError naming the field for each malformation."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from orbitset.errors import SchemaError
from orbitset.schema import ObjectSample, decode, encode
from orbitset.testing import synthetic_sample


@pytest.fixture
def sample() -> ObjectSample:
    return synthetic_sample("mug", 2, 7, views=4, size=16, seed=1)


def test_round_trip_keeps_every_field(sample):
    sample.points = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    sample.translations = np.zeros((4, 3))
    sample.depths = [b"d%d" % i for i in range(4)]
    sample.masks = [b"m%d" % i for i in range(4)]
    sample.meta["depth_unit"] = 0.001
    fields = encode(sample)
    assert fields["__key__"] == "mug__0007"
    assert {"000.jpg", "003.jpg", "000.depth.png", "003.mask.png", "latents.npy", "rotations.npy", "points.npy", "cls"} <= set(fields)
    assert fields["cls"] == b"2"
    back = decode(fields)
    assert back.images == sample.images and back.depths == sample.depths and back.masks == sample.masks
    assert np.array_equal(back.latents, sample.latents) and back.latents.dtype == np.float64
    assert np.array_equal(back.rotations, sample.rotations)
    assert np.array_equal(back.points, sample.points) and back.points.dtype == np.float32
    assert back.meta == sample.meta and back.camera == sample.camera and back.label == 2


_ENCODING_DIGEST = """
import hashlib, sys
from orbitset.schema import encode
from orbitset.testing import synthetic_sample
fields = encode(synthetic_sample("mug", 2, 7, views=4, size=16, seed=1, points=32))
digest = hashlib.sha256()
for name in sorted(fields):
    value = fields[name]
    digest.update(name.encode() + b"\\0" + (value.encode() if isinstance(value, str) else bytes(value)) + b"\\0")
print(digest.hexdigest())
"""


def _encoding_digest(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _ENCODING_DIGEST], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_encoding_is_the_same_bytes_in_every_process():
    """Same sample -> same bytes across interpreters whose str hashing (PYTHONHASHSEED) differs."""
    first, second = _encoding_digest("1"), _encoding_digest("4242")
    assert len(first) == 64 and first == second
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(_ENCODING_DIGEST, namespace)
    assert printed.getvalue().strip() == first


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: setattr(s, "key", "Mug.7"), "key"),
        (lambda s: setattr(s, "key", "mug_7"), "key"),
        (lambda s: setattr(s, "latents", s.latents[:3]), "latents.npy"),
        (lambda s: setattr(s, "latents", s.latents.astype(object)), "latents.npy"),
        (lambda s: setattr(s, "rotations", s.rotations[:, :2]), "rotations.npy"),
        (lambda s: setattr(s, "rotations", s.rotations * 2), "rotations.npy"),
        (lambda s: setattr(s, "rotations", -s.rotations), "rotations.npy"),
        (lambda s: s.latents.__setitem__((0, 0), np.nan), "latents.npy"),
        (lambda s: setattr(s, "translations", np.zeros((3, 3))), "translations.npy"),
        (lambda s: setattr(s, "points", np.zeros((10, 3), np.float32)), "points.npy"),
        (lambda s: setattr(s, "masks", [b"x"]), "mask"),
        (lambda s: s.meta.pop("class_index"), "meta.json"),
        (lambda s: s.meta.__setitem__("num_views", 9), "num_views"),
        (lambda s: s.meta.__setitem__("factor_names", ["a"]), "factor_names"),
        (lambda s: setattr(s, "images", []), "view images"),
        (lambda s: s.images.__setitem__(1, b""), "001.jpg"),
        (lambda s: setattr(s, "image_format", "gif"), "image format"),
        (lambda s: s.camera.pop("K"), "camera.json"),
        (lambda s: s.camera.__setitem__("extrinsics", [[1, 0], [0, 1]]), "extrinsics"),
    ],
)
def test_malformed_samples_name_the_field(sample, mutate, message):
    mutate(sample)
    with pytest.raises(SchemaError, match=message.replace(".", r"\.")):
        sample.validate()


def test_decode_refuses_pickled_arrays_and_bad_json(sample):
    fields = encode(sample)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SchemaError, match="latents.npy.*object arrays are refused"):
        decode({**fields, "latents.npy": buffer.getvalue()})
    with pytest.raises(SchemaError, match="meta.json.*invalid JSON"):
        decode({**fields, "meta.json": b"{not json"})
    with pytest.raises(SchemaError, match="'rotations.npy' is missing"):
        decode({k: v for k, v in fields.items() if k != "rotations.npy"})


def test_decode_checks_view_indices_and_label(sample):
    fields = encode(sample)
    gap = {k: v for k, v in fields.items() if k != "001.jpg"}
    with pytest.raises(SchemaError, match="view image indices"):
        decode(gap)
    with pytest.raises(SchemaError, match="'cls'.*disagrees"):
        decode({**fields, "cls": b"5"})
    meta = json.loads(fields["meta.json"])
    meta["num_views"] = 3
    with pytest.raises(SchemaError, match="num_views 3 but 4"):
        decode({**fields, "meta.json": json.dumps(meta).encode()})


@pytest.mark.parametrize("array", [
    np.arange(7, dtype=np.float64),
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.arange(6, dtype=">i4").reshape(3, 2),
    np.zeros((0, 3), dtype=np.uint8),
    np.float64(3.5),
])
def test_read_npy_fast_path_matches_numpy(array):
    from orbitset.schema import read_npy

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    parsed = read_npy(buffer.getvalue(), "x.npy")
    assert parsed.dtype == array.dtype and parsed.shape == array.shape
    np.testing.assert_array_equal(parsed, array)


def test_read_npy_refuses_object_arrays_and_reads_fortran_order():
    from orbitset.schema import read_npy

    fortran = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    buffer = io.BytesIO()
    np.save(buffer, fortran, allow_pickle=False)
    np.testing.assert_array_equal(read_npy(buffer.getvalue(), "f.npy"), fortran)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SchemaError, match="o.npy"):
        read_npy(pickled.getvalue(), "o.npy")
    with pytest.raises(SchemaError, match="t.npy"):
        read_npy(buffer.getvalue()[:20], "t.npy")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3)),
    np.array([True, False]),
    np.float64(2.5),
])
def test_plain_arrays_are_parsed_without_ast(array, version, monkeypatch):
    """numpy evaluates .npy headers with `ast`, which CPython 3.11 cannot run in two threads at once (verify and the
    tree reader decode in threads): the headers np.save writes are parsed without it."""
    import ast

    from orbitset.schema import load_npy, read_npy

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), version=version, allow_pickle=False)

    def refuse(*args, **kwargs):
        raise AssertionError("ast was used")

    monkeypatch.setattr(ast, "literal_eval", refuse)
    monkeypatch.setattr(ast, "parse", refuse)
    copied, viewed = load_npy(buffer.getvalue(), "x.npy"), read_npy(buffer.getvalue(), "x.npy")
    for parsed in (copied, viewed):
        assert parsed.dtype == np.asarray(array).dtype and parsed.shape == np.shape(array)
        np.testing.assert_array_equal(parsed, array)
    assert copied.flags.writeable and not viewed.flags.writeable
    assert copied.flags.f_contiguous == np.asarray(array).flags.f_contiguous


def test_other_headers_still_load_through_numpy():
    from orbitset.schema import load_npy

    for array in (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]), np.array(["2020-01-01"], dtype="datetime64[D]")):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        np.testing.assert_array_equal(load_npy(buffer.getvalue(), "s.npy"), array)


@pytest.mark.parametrize("name, expected", [
    ("000.jpg", True), ("049.png", True), ("007.webp", True), ("000.depth.png", False), ("000.mask.png", False),
    ("latents.npy", False), ("cls", False), ("00.jpg", False), ("0000.jpg", False), ("000.bmp", False),
])
def test_is_view_field(name, expected):
    from orbitset.schema import is_view_field

    assert is_view_field(name) is expected
