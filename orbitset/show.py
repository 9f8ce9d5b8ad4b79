"""Pictures of a dataset: the contact sheet of its orbits and the sheet of the pairs a loader delivers.

Contact sheet: one row per object, its views left to right, each labelled with its factor values (Euler angles in
degrees, the other factors abbreviated, hues with a swatch of their colour), and the object's point cloud as a small
scatter at the end of the row. Pair sheet: one row per pair as `PairLoader` yields it, with the relative rotation as
axis and angle and the factor deltas. Drawn with Pillow from the first samples of the shards, read front to back (`orbitset.shard_scan`) only as far as
the rows shown.
"""

from __future__ import annotations

import colorsys
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from orbitset.errors import ManifestError, ShardError, UsageError
from orbitset.manifests.model import load_manifest, manifest_path
from orbitset.manifests.stats import check_not_empty
from orbitset.schema import is_view_field, load_json, load_npy, view_field
from orbitset.shard_scan import ScannedSample, scan_shard

FONT_SIZE = 10
LINE = FONT_SIZE + 2
TITLE = LINE + 2
LABEL_LINES = 3
#: (text, RGB swatch or None): one item of a view's label.
Token = tuple[str, tuple[int, int, int] | None]


@dataclass
class ObjectRow:
    """What the contact sheet draws of one object: its title, chosen views with their labels, and point cloud."""

    title: str
    images: list  # PIL images, one per chosen view
    labels: list[list[Token]]
    points: np.ndarray | None


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _shard_paths(source: str | os.PathLike, split: str | None) -> list[Path]:
    """The shards of a dataset folder or manifest (those of `split` when given), or the one shard `source` names."""
    path = Path(source)
    if path.suffix == ".tar":
        if not path.is_file():
            raise ShardError(f"shard {path} does not exist; point at a dataset folder or an existing .tar shard")
        return [path]
    manifest = load_manifest(path)
    check_not_empty(manifest, path, split)
    root = manifest_path(path).parent
    return [root / entry.name for entry in manifest.shards_for(split)]


def abbreviation(name: str) -> str:
    """Short label of a factor name: the first letter of each part (``floor_hue`` -> ``fh``)."""
    return "".join(part[0] for part in name.split("_") if part) or name


def hue_swatch(hue: float) -> tuple[int, int, int]:
    """RGB of a hue in [0, 1] at full saturation, so that hue labels can be checked by eye against the picture."""
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def factor_tokens(names: Sequence[str], units: Sequence[str], values: np.ndarray) -> list[Token]:
    """The label of one view: Euler rotation factors (``rot_*``, radians) as one token in degrees, then each other
    factor as ``abbreviation value`` (hues, named ``*_hue``, with a swatch of their colour)."""
    tokens: list[Token] = []
    rotation = [i for i, name in enumerate(names) if name.startswith("rot_") and units[i] == "rad"]
    if rotation:
        tokens.append(("R " + ",".join(f"{math.degrees(values[i]):.0f}" for i in rotation) + "°", None))
    for index, name in enumerate(names):
        if index in rotation:
            continue
        swatch = hue_swatch(float(values[index])) if name.endswith("_hue") else None
        tokens.append((f"{abbreviation(name)} {values[index]:.2f}", swatch))
    return tokens


def _numbered(view: int, tokens: list[Token]) -> list[Token]:
    """`tokens` with the view index in front of the first one (``#3 R 12,-40,88 deg``)."""
    if not tokens:
        return [(f"#{view}", None)]
    (text, swatch), *rest = tokens
    return [(f"#{view} {text}", swatch), *rest]


def _draw_tokens(draw, left: int, top: int, width: int, tokens: list[Token], font, lines: int = LABEL_LINES) -> None:
    """Write `tokens` left to right from (left, top), wrapping within `width`, on at most `lines` lines."""
    x, y, line = left + 2, top + 1, 0
    for text, swatch in tokens:
        extent = draw.textlength(text, font=font) + (LINE if swatch else 0)
        if x + extent > left + width and x > left + 2:
            line += 1
            if line == lines:
                return
            x, y = left + 2, y + LINE
        draw.text((x, y), text, fill="black", font=font)
        x += int(draw.textlength(text, font=font))
        if swatch:
            draw.rectangle((x + 2, y + 1, x + LINE - 2, y + LINE - 3), fill=swatch, outline="black")
            x += LINE
        x += 5


def point_scatter(points: np.ndarray | None, side: int, font=None):
    """A `side`-pixel picture of the (N, >=3) points, seen from above and the side (elevation 25 deg, azimuth 45
    deg), nearer points darker; a grey "no points" tile when `points` is None."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    if points is None or len(points) == 0:
        draw.text((4, side // 2 - LINE // 2), "no points", fill="grey", font=font or _font())
        return image
    xyz = np.asarray(points[:, :3], dtype=np.float64)
    azimuth, elevation = math.radians(45), math.radians(25)
    turn = np.array([[math.cos(azimuth), -math.sin(azimuth), 0], [math.sin(azimuth), math.cos(azimuth), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, math.cos(elevation), -math.sin(elevation)], [0, math.sin(elevation), math.cos(elevation)]])
    view = xyz @ (tilt @ turn).T  # x right, y away from the viewer, z up
    scale = 0.45 * side / max(np.abs(view[:, [0, 2]]).max(), 1e-9)
    u = side / 2 + view[:, 0] * scale
    v = side / 2 - view[:, 2] * scale
    depth = (view[:, 1] - view[:, 1].min()) / max(np.ptp(view[:, 1]), 1e-9)
    for index in np.argsort(-depth):  # far points first, near ones drawn over them
        shade = int(40 + 160 * depth[index])
        draw.point((float(u[index]), float(v[index])), fill=(shade, shade, 255 - shade // 2))
    return image


def axis_and_angle(rotvec: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit axis, angle in degrees) of a rotation vector (radians); the axis is +Z for the identity."""
    angle = float(np.linalg.norm(rotvec))
    return (rotvec / angle if angle > 1e-12 else np.array([0.0, 0.0, 1.0])), math.degrees(angle)


def _decode(data: bytes, side: int, bgr: bool):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (side, side))
        image = opened.convert("RGB").resize((side, side))
    if bgr:
        image = Image.merge("RGB", image.split()[::-1])
    return image


def read_rows(source: str | os.PathLike, objects: int, views: int, split: str | None, tile: int) -> list[ObjectRow]:
    """The first `objects` objects of `source` (dataset folder, manifest or one shard), with `views` evenly spaced
    views each, decoded at `tile` pixels."""
    rows: list[ObjectRow] = []
    for path in _shard_paths(source, split):
        for sample in scan_shard(path):  # front to back, one sample at a time, only as far as the rows shown
            rows.append(_object_row(path.name, sample, views, tile))
            if len(rows) == objects:
                return rows
    if not rows:
        raise ManifestError(f"{source} has no objects{'' if split is None else f' in split {split!r}'}; nothing to show")
    return rows


def _object_row(shard: str, sample: ScannedSample, views: int, tile: int) -> ObjectRow:
    """The contact sheet's row of one sample: `views` evenly spaced views decoded at `tile` pixels, their labels."""
    key, fields = sample.key, sample.data
    for name in ("meta.json", "latents.npy"):
        if name not in fields:
            raise ShardError(f"shard {shard} sample {key!r} has no {name}; re-render or re-download it")
    meta = load_json(fields["meta.json"], f"{shard} sample {key!r} meta.json")
    latents = load_npy(fields["latents.npy"], f"{shard} sample {key!r} latents.npy")
    image_format = next((f.split(".")[1] for f in sample.fields if f.startswith("000.") and is_view_field(f)), None)
    if image_format is None:
        raise ShardError(f"shard {shard} sample {key!r} has no view image 000; re-render or re-download it")
    chosen = [int(i) for i in np.linspace(0, len(latents) - 1, min(views, len(latents))).round().astype(int)]
    missing = [view_field(i, image_format) for i in chosen if view_field(i, image_format) not in fields]
    if missing:
        raise ShardError(f"shard {shard} sample {key!r} has no field {missing[0]!r}")
    bgr = meta.get("channel_order") == "bgr"
    points = fields.get("points.npy")
    return ObjectRow(
        title=f"{key} ({meta['class_name']}, {len(latents)} views)",
        images=[_decode(fields[view_field(i, image_format)], tile, bgr) for i in chosen],
        labels=[_numbered(i, factor_tokens(meta["factor_names"], meta["factor_units"], latents[i])) for i in chosen],
        points=None if points is None else load_npy(points, f"{shard} sample {key!r} points.npy"),
    )


def _check_sizes(what: str, **values: int) -> None:
    """UsageError unless every value is an integer of at least 1 (`tile`: 16)."""
    for name, value in values.items():
        least = 16 if name == "tile" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{what}: {name} must be an integer of at least {least}, got {value!r}")


def contact_sheet(dataset: str | os.PathLike, out: str | os.PathLike, objects: int = 6, views: int = 8,
                  split: str | None = None, tile: int = 128) -> Path:
    """Write the contact sheet PNG of `dataset` (folder, manifest or one shard): `objects` rows of `views` views of
    `tile` pixels, labelled with their factor values, then the object's point cloud. Returns the PNG path."""
    from PIL import Image, ImageDraw

    _check_sizes("contact sheet", objects=objects, views=views, tile=tile)
    rows = read_rows(dataset, objects, views, split, tile)
    columns = max(len(row.images) for row in rows) + 1
    label = LABEL_LINES * LINE + 2
    height = TITLE + tile + label
    sheet = Image.new("RGB", (columns * tile, len(rows) * height), "white")
    draw, font = ImageDraw.Draw(sheet), _font()
    for r, row in enumerate(rows):
        top = r * height
        draw.text((2, top + 1), row.title, fill="black", font=_font(FONT_SIZE + 1))
        for c, (image, tokens) in enumerate(zip(row.images, row.labels)):
            sheet.paste(image, (c * tile, top + TITLE))
            _draw_tokens(draw, c * tile, top + TITLE + tile, tile, tokens, font)
        sheet.paste(point_scatter(row.points, tile, font), ((columns - 1) * tile, top + TITLE))
        draw.text(((columns - 1) * tile + 2, top + TITLE + tile + 1), "points" if row.points is not None else "",
                  fill="black", font=font)
        draw.line((0, top + height - 1, sheet.width, top + height - 1), fill=(200, 200, 200))
    return _save(sheet, out)


def pair_sheet(dataset: str | os.PathLike, out: str | os.PathLike, pairs: int = 8, split: str | None = None,
               tile: int = 128, seed: int = 0) -> Path:
    """Write a PNG of the first batch of `pairs` pairs `PairLoader` delivers from `dataset` (seed `seed`): per row
    view a, view b, and the relative rotation R_a^T R_b as axis and angle with the factor deltas b - a."""
    from PIL import Image, ImageDraw

    from orbitset.loaders import PairLoader

    _check_sizes("pair sheet", pairs=pairs, tile=tile)
    source = [str(dataset)] if Path(dataset).suffix == ".tar" else dataset
    loader = PairLoader(source, batch_size=pairs, split=split if Path(dataset).suffix != ".tar" else None, seed=seed,
                        size=tile, normalize=False, rotation="axis_angle", channels_last=False)
    batch = next(iter(loader))
    text_width = 2 * tile
    height = tile + 4
    sheet = Image.new("RGB", (2 * tile + text_width, len(batch["key"]) * height), "white")
    draw, font = ImageDraw.Draw(sheet), _font()
    names = loader.rel_latent_names
    for row, key in enumerate(batch["key"]):
        top = row * height
        for slot, name in enumerate(("view_a", "view_b")):
            pixels = batch[name][row].permute(1, 2, 0).numpy()
            sheet.paste(Image.fromarray(pixels), (slot * tile, top))
        axis, angle = axis_and_angle(batch["rel_rotation"][row].double().numpy())
        deltas = batch["rel_latents"][row].double().numpy()
        lines = [
            f"{key}: view {int(batch['index_a'][row])} -> {int(batch['index_b'][row])}",
            f"R_a^T R_b: {angle:.1f}° about",
            f"  ({axis[0]:+.2f}, {axis[1]:+.2f}, {axis[2]:+.2f})",
        ]
        left = 2 * tile + 4
        for index, text in enumerate(lines):
            draw.text((left, top + 2 + index * LINE), text, fill="black", font=font)
        tokens = [(f"d{abbreviation(name)} {value:+.2f}", None) for name, value in zip(names, deltas)]
        _draw_tokens(draw, left - 2, top + 2 + len(lines) * LINE, text_width, tokens, font, lines=4)
        draw.line((0, top + height - 2, sheet.width, top + height - 2), fill=(200, 200, 200))
    return _save(sheet, out)


def _save(sheet, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name("." + out.name + ".partial")
    sheet.save(partial, format="PNG")
    os.replace(partial, out)
    return out
