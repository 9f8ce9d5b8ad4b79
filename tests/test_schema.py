"""The object-sample format: round trips, and a clear SchemaError naming the field for each malformation."""

from __future__ import annotations

import io
import json

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


def test_encoding_is_deterministic(sample):
    assert encode(sample) == encode(sample)


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
