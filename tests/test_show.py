"""Pictures: the contact sheet shows each object's views where they belong, labels them with their own factor
values and ends each row with the point cloud; the pair sheet shows the loader's pairs."""

from __future__ import annotations

import colorsys
import math
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from orbitset.cli import main
from orbitset.errors import ShardError
from orbitset.loaders import PairLoader
from orbitset.schema import load_npy
from orbitset.shards import ShardReader
from orbitset.show import LABEL_LINES, LINE, TITLE, axis_and_angle, factor_tokens
from orbitset.testing import write_synthetic_dataset


def stored_view(path, index: int = 0, view: str = "000.jpg") -> np.ndarray:
    with ShardReader(path) as reader:
        return np.asarray(Image.open(BytesIO(reader.read_field(reader.keys()[index], view))).convert("RGB")).astype(int)


def test_contact_sheet_layout_pixels_and_points(tmp_path):
    write_synthetic_dataset(tmp_path / "d", classes=2, objects_per_class=3, views=4, size=32, points=64)
    out = tmp_path / "s.png"
    assert main(["show", str(tmp_path / "d"), "--out", str(out), "--objects", "2", "--views", "4", "--tile", "32"]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    row = TITLE + 32 + LABEL_LINES * LINE + 2
    assert sheet.shape == (2 * row, (4 + 1) * 32, 3)  # 4 views + the point cloud
    first = stored_view(tmp_path / "d" / "train-000000.tar")
    assert np.abs(sheet[TITLE + 30, 30] - first[30, 30]).max() < 12  # floor corner of view 0 of object 0
    cloud = sheet[TITLE : TITLE + 32, 4 * 32 :]
    assert (np.abs(cloud - 245).max(axis=-1) > 30).sum() > 20  # points drawn on the light background


def test_one_shard_without_points(tmp_path):
    write_synthetic_dataset(tmp_path / "d", classes=2, objects_per_class=2, views=3, size=16)
    out = tmp_path / "one.png"
    assert main(["show", str(tmp_path / "d" / "train-000000.tar"), "--out", str(out), "--views", "3", "--tile", "48"]) == 0
    assert Image.open(out).size == (4 * 48, 4 * (TITLE + 48 + LABEL_LINES * LINE + 2))
    with pytest.raises(ShardError, match="does not exist"):
        from orbitset.show import contact_sheet

        contact_sheet(tmp_path / "missing.tar", out)


def test_labels_are_the_views_factor_values(tmp_path):
    write_synthetic_dataset(tmp_path / "d", classes=1, objects_per_class=1, views=2, size=16)
    with ShardReader(tmp_path / "d" / "train-000000.tar") as reader:
        key = reader.keys()[0]
        latents = load_npy(reader.read_field(key, "latents.npy"), "latents")
    names = ["rot_x", "rot_y", "rot_z", "floor_hue", "spot_theta", "spot_phi", "spot_hue"]
    units = ["rad", "rad", "rad", "1", "rad", "rad", "1"]
    tokens = factor_tokens(names, units, latents[1])
    assert tokens[0] == ("R " + ",".join(f"{math.degrees(v):.0f}" for v in latents[1, :3]) + "°", None)
    assert [text for text, _ in tokens[1:]] == [f"{a} {v:.2f}" for a, v in zip(["fh", "st", "sp", "sh"], latents[1, 3:])]
    for (_, swatch), hue in ((tokens[1], latents[1, 3]), (tokens[4], latents[1, 6])):
        shown = colorsys.rgb_to_hsv(*(c / 255 for c in swatch))[0]
        assert min(abs(shown - hue), 1 - abs(shown - hue)) < 0.01
    assert tokens[2][1] is None  # only hues get a swatch


def test_pair_sheet_shows_the_loader_pairs(tmp_path):
    write_synthetic_dataset(tmp_path / "d", classes=2, objects_per_class=3, views=4, size=32)
    out = tmp_path / "pairs.png"
    assert main(["show", str(tmp_path / "d"), "--pairs", "--objects", "3", "--tile", "32", "--seed", "5", "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert sheet.shape == (3 * (32 + 4), 4 * 32, 3)
    batch = next(iter(PairLoader(tmp_path / "d", batch_size=3, seed=5, size=32, normalize=False)))
    for row in range(3):
        for slot, name in enumerate(("view_a", "view_b")):
            expected = batch[name][row].permute(1, 2, 0).numpy().astype(int)
            top = row * 36
            assert np.array_equal(sheet[top : top + 32, slot * 32 : slot * 32 + 32], expected)


def test_axis_and_angle():
    axis, angle = axis_and_angle(np.array([0.0, 0.0, -math.pi / 2]))
    assert np.allclose(axis, [0, 0, -1]) and math.isclose(angle, 90.0)
    assert np.allclose(axis_and_angle(np.zeros(3))[0], [0, 0, 1])
