"""Contact sheets: a picture of a dataset's orbits (one row per object, one column per view)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from orbitset.manifests.model import load_manifest, manifest_path
from orbitset.manifests.stats import check_not_empty
from orbitset.schema import load_json, load_npy, view_field
from orbitset.shards import ShardReader


def _decode_rgb(data: bytes, side: int, channel_order: str):
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.draft("RGB", (side, side))
    image = image.resize((side, side))
    if channel_order == "bgr":
        image = Image.merge("RGB", image.split()[::-1])
    return image


def contact_sheet(dataset: str | Path, out: str | Path, objects: int = 6, views: int = 8, split: str | None = None, tile: int = 96) -> Path:
    """Write a PNG grid of `objects` objects x `views` views of `dataset`; each tile is labelled with the view index
    and the object rotation's angle about its axis in degrees. Returns the PNG path."""
    from PIL import Image, ImageDraw

    from orbitset import geometry

    manifest = load_manifest(dataset)
    check_not_empty(manifest, dataset, split)
    root = manifest_path(dataset).parent
    rows: list[tuple[str, list]] = []
    for shard in manifest.shards_for(split):
        with ShardReader(root / shard.name) as reader:
            for key in reader.keys():
                if len(rows) == objects:
                    break
                head = reader.read(key, ["meta.json", "rotations.npy"])
                meta = load_json(head["meta.json"], f"{shard.name} {key} meta.json")
                rotations = load_npy(head["rotations.npy"], f"{shard.name} {key} rotations.npy")
                fmt = next(f.split(".")[1] for f in reader.fields(key) if f.startswith("000.") and f.count(".") == 1)
                chosen = np.linspace(0, meta["num_views"] - 1, min(views, meta["num_views"])).round().astype(int)
                blobs = reader.read(key, [view_field(int(i), fmt) for i in chosen])
                angles = np.degrees(np.linalg.norm(geometry.matrix_to_axis_angle(rotations[chosen]), axis=-1))
                tiles = [
                    (_decode_rgb(blobs[view_field(int(i), fmt)], tile, meta.get("channel_order", "rgb")), f"{i}: {a:.0f}°")
                    for i, a in zip(chosen, angles)
                ]
                rows.append((f"{key} ({meta['class_name']})", tiles))
        if len(rows) == objects:
            break
    label_h = 14
    columns = max(len(t) for _, t in rows)
    sheet = Image.new("RGB", (columns * tile, len(rows) * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, tiles) in enumerate(rows):
        top = r * (tile + label_h)
        draw.text((2, top + 1), title, fill="black")
        for c, (image, caption) in enumerate(tiles):
            sheet.paste(image, (c * tile, top + label_h))
            draw.text((c * tile + 2, top + label_h + 2), caption, fill="white", stroke_width=1, stroke_fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out

