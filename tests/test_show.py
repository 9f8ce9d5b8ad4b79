"""Contact sheets show the views of each object at the right place."""

from __future__ import annotations

import numpy as np
from PIL import Image

from orbitset.cli import main
from orbitset.testing import write_synthetic_dataset


def test_contact_sheet_layout_and_pixels(tmp_path):
    write_synthetic_dataset(tmp_path / "d", classes=2, objects_per_class=3, views=4, size=32)
    assert main(["show", str(tmp_path / "d"), "--out", str(tmp_path / "s.png"), "--objects", "2", "--views", "4", "--tile", "32"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "s.png").convert("RGB")).astype(int)
    assert sheet.shape == (2 * (32 + 14), 4 * 32, 3)
    # the first tile's lower-right corner is floor: the same colour as the stored view's floor
    from orbitset.shards import ShardReader
    from io import BytesIO

    with ShardReader(tmp_path / "d" / "train-000000.tar") as reader:
        first = np.asarray(Image.open(BytesIO(reader.read(reader.keys()[0], ["000.jpg"])["000.jpg"])).convert("RGB")).astype(int)
    assert np.abs(sheet[14 + 30, 30] - first[30, 30]).max() < 12
