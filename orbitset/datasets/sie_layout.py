"""3DIEBench's published layout: its variants, its split files, and one object folder turned into an ObjectSample.

The layout of the published archive (SIE repository, data/README.md): ``.../SYNSET/OBJECT_ID/image_{i}.jpg`` and ``latent_{i}.npy`` (float64, shape (F,), F = 7,
or 10 for 3DIEBench-T), i = 0..V-1, and split files ``<split>_images.npy`` (entries like ``/02691156/<id>/``) with
``<split>_labels.npy`` (class index = position of the synset in the sorted list of synsets). Every ``.npy`` is parsed
without unpickling.

A sample (`build_samples`): images byte for byte, latents (V, F) float64, rotations = `geometry.euler_to_matrix` of
latents[:, :3] ("xyz" extrinsic), for 3DIEBench-T translations = R @ t (the object-frame translation
t = latents[:, 7:10] in the world frame), the 3DIEBench camera, and ``meta["channel_order"] = "bgr"``: the published
JPEGs have red and blue swapped (written by OpenCV from an RGB array), which the loaders undo at decode time.
With ``fix_colors`` the images are re-encoded in RGB order instead and the sample says ``"rgb"``.
"""

from __future__ import annotations

import functools
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from orbitset import geometry, threediebench
from orbitset.errors import AssetError, OrbitsetError
from orbitset.schema import ObjectSample, load_npy, read_npy

IMAGES_SUFFIX, LABELS_SUFFIX = "_images.npy", "_labels.npy"
#: The split of every object when the source has no split files.
ALL_SPLIT = "all"
CHANNEL_NOTE = (
    "the published 3DIEBench JPEGs have red and blue swapped (written with OpenCV from an RGB array); "
    "swap channels 0 and 2 after decoding to get RGB"
)
FIXED_NOTE = "re-encoded from the published JPEGs (red and blue swapped back) at JPEG quality {quality}"
#: JPEG quality of images re-encoded by ``fix_colors``.
FIX_QUALITY = 95
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VIEW_FILE = re.compile(r"^(image|latent)_(\d+)\.(jpg|npy)$")
_JPEG_MAGIC = b"\xff\xd8"
#: Why an object whose folder holds a complete set of another number of views fails (see `views_found`).
VIEW_COUNT = "the folder holds {found} views (image_i.jpg and latent_i.npy) where the conversion expects {views}"
_VIEW_COUNT = re.compile(re.escape(VIEW_COUNT).replace(r"\{found\}", r"(?P<found>\d+)").replace(r"\{views\}", r"\d+"))


@dataclass(frozen=True)
class Layout:
    """A published variant: its factors (name, unit, low, high) and whether latents[:, 7:10] is a translation."""

    name: str
    factors: tuple[tuple[str, str, float, float], ...]
    translation: bool = False


# OOD angles are drawn from the union of `threediebench.OOD_ROTATION_RANGES`; the range recorded is the enclosing one.
_OOD_LOW = min(low for low, _ in threediebench.OOD_ROTATION_RANGES)
_OOD_HIGH = max(high for _, high in threediebench.OOD_ROTATION_RANGES)
_OOD_ROTATION = tuple((name, unit, _OOD_LOW, _OOD_HIGH) for name, unit, _, _ in threediebench.FACTORS[:3])
LAYOUTS = {
    "3diebench": Layout("3diebench", threediebench.FACTORS),
    "3diebench-t": Layout("3diebench-t", threediebench.FACTORS + threediebench.TRANSLATION_FACTORS, translation=True),
    "3diebench-ood": Layout("3diebench-ood", _OOD_ROTATION + threediebench.FACTORS[3:]),
}


def layout_named(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise AssetError(f"unknown layout {name!r}; choose one of {sorted(LAYOUTS)}") from None


def view_file(path: str) -> tuple[str, str, str] | None:
    """``.../SYNSET/OBJECT_ID/image_3.jpg`` -> (synset, object id, file name); None for a file of no object folder
    (split files, READMEs, folders). The layout's root may sit at any depth."""
    parts = path.rsplit("/", 3)[-3:]  # the common case: three non-empty last parts, no backslash
    if len(parts) < 3 or not all(parts) or "\\" in path:
        parts = [p for p in path.replace("\\", "/").split("/") if p]
    if len(parts) < 3 or not VIEW_FILE.match(parts[-1]):
        return None
    return parts[-3], parts[-2], parts[-1]


# --- split files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    """Which split and class index each object has: ``assigned[(synset, object_id)] = (split, class_index)``.

    `classes` are the sorted synsets; an object's class index is its synset's position there. `files` names the split
    files read and their sha256 (recorded in the manifest)."""

    assigned: dict[tuple[str, str], tuple[str, int]]
    classes: list[str]
    files: dict[str, str]
    duplicates: list[tuple[str, str, str]]

    def listed(self, split: str) -> list[tuple[str, str]]:
        return sorted(k for k, (s, _) in self.assigned.items() if s == split)


def parse_npy(data: bytes, what: str) -> np.ndarray:
    """Plain .npy bytes -> array; object arrays (pickles) and malformed files raise AssetError naming `what`."""
    try:
        return load_npy(data, what)
    except ValueError as exc:
        raise AssetError(f"{exc}; split and label files are never unpickled") from exc


def _split_entry(entry: Any, what: str) -> tuple[str, str]:
    text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
    parts = [p for p in text.strip().split("/") if p]
    if len(parts) != 2 or not all(SAFE_NAME.match(p) for p in parts):
        raise AssetError(f"{what}: entry {text!r} is not '/SYNSET/OBJECT_ID/'")
    return parts[0], parts[1]


def splits_from_files(files: Mapping[str, bytes], known_synsets: set[str] | None = None) -> Splits:
    """Split assignment from the bytes of ``<split>_images.npy`` (and ``<split>_labels.npy`` when present) files,
    keyed by file name. Labels must follow the sorted-synset rule (AssetError otherwise). `known_synsets` (the synsets
    of a source listed beforehand) join the classes; without split files every known object goes to ``all``."""
    import hashlib

    entries: dict[str, list[tuple[str, str]]] = {}
    labels: dict[str, np.ndarray] = {}
    for name in sorted(files):
        if name.endswith(IMAGES_SUFFIX):
            array = parse_npy(files[name], name).reshape(-1)
            entries[name[: -len(IMAGES_SUFFIX)]] = [_split_entry(e, name) for e in array]
    for split, listed in entries.items():
        name = split + LABELS_SUFFIX
        if name in files:
            array = parse_npy(files[name], name).reshape(-1)
            if len(array) != len(listed) or array.dtype.kind not in "iu":
                raise AssetError(f"{name}: expected {len(listed)} integer labels, got {len(array)} of {array.dtype}")
            labels[split] = array
    classes = sorted({s for listed in entries.values() for s, _ in listed} | (known_synsets or set()))
    index = {synset: i for i, synset in enumerate(classes)}
    assigned: dict[tuple[str, str], tuple[str, int]] = {}
    duplicates: list[tuple[str, str, str]] = []
    for split, listed in entries.items():
        for position, (synset, object_id) in enumerate(listed):
            if split in labels and int(labels[split][position]) != index[synset]:
                raise AssetError(
                    f"{split}{LABELS_SUFFIX}: label {int(labels[split][position])} of /{synset}/{object_id}/ is not the "
                    f"position {index[synset]} of its synset among the {len(classes)} sorted synsets; are these the "
                    "split files of this dataset?"
                )
            if (synset, object_id) in assigned:
                duplicates.append((synset, object_id, split))
            else:
                assigned[(synset, object_id)] = (split, index[synset])
    used = {name: hashlib.sha256(data).hexdigest() for name, data in files.items() if name.endswith((IMAGES_SUFFIX, LABELS_SUFFIX))}
    return Splits(assigned=assigned, classes=classes, files=used, duplicates=duplicates)


# --- one object --------------------------------------------------------------------------------------------------

def swap_red_blue(image: bytes, quality: int = FIX_QUALITY) -> bytes:
    """A JPEG with red and blue swapped, re-encoded at `quality` (decoding as BGR then encoding as RGB)."""
    import simplejpeg

    return simplejpeg.encode_jpeg(simplejpeg.decode_jpeg(image, colorspace="BGR"), quality=quality, colorspace="RGB")


@functools.lru_cache(maxsize=8)
def _camera_json(width: int, height: int) -> str:
    intrinsics = geometry.intrinsics_from_fov(threediebench.CAMERA_FOV, width, height)
    return json.dumps({"width": width, "height": height, "K": np.asarray(intrinsics).tolist(),
                       "extrinsics": threediebench.camera_extrinsics().tolist()})


def _camera(width: int, height: int) -> dict[str, Any]:
    """3DIEBench's camera for images of this size (computed once per size; a fresh dict each time)."""
    return json.loads(_camera_json(width, height))


@dataclass(frozen=True)
class ObjectFiles:
    """One object folder to convert: its synset, object id, class index and files (name -> bytes)."""

    synset: str
    object_id: str
    class_index: int
    files: Mapping[str, bytes]


def build_samples(layout: Layout, objects: Sequence[ObjectFiles], views: int,
                  fix_colors: bool = False) -> list[ObjectSample | OrbitsetError]:
    """The ObjectSample of each object folder (its `encode` validates it), or the error that makes it broken (missing
    or extra views, a file that is not a JPEG, unreadable latents), in order. The rotations of all of them are computed
    in one call: for a single object the call's fixed cost is most of the work."""
    checked: list[tuple[list[bytes], np.ndarray, int, int] | OrbitsetError] = []
    for obj in objects:
        try:
            checked.append(_read_views(layout, obj.files, views, fix_colors))
        except OrbitsetError as exc:
            checked.append(exc)
    tables = [c[1] for c in checked if not isinstance(c, OrbitsetError)]
    rotations = iter(np.split(np.asarray(geometry.euler_to_matrix(np.concatenate(tables)[:, :3])), len(tables))
                     if tables else [])
    return [c if isinstance(c, OrbitsetError) else _sample(layout, obj, views, fix_colors, *c, next(rotations))
            for obj, c in zip(objects, checked)]


def _npy_v1_header(data: bytes, payload: int) -> bytes:
    """The header of .npy file `data` if it is version 1 and followed by exactly `payload` bytes, else b""."""
    if data[6:7] != b"\x01" or len(data) < 10:
        return b""
    end = 10 + int.from_bytes(data[8:10], "little")
    return data[:end] if len(data) - end == payload else b""


def _complete_views(files: Mapping[str, bytes]) -> int | None:
    """N when `files` are exactly image_i.jpg and latent_i.npy for i = 0..N-1, else None."""
    count = len(files) // 2
    if len(files) % 2 or any(f"{kind}_{i}.{ext}" not in files for i in range(count)
                             for kind, ext in (("image", "jpg"), ("latent", "npy"))):
        return None
    return count


def views_found(reasons: Sequence[str]) -> int | None:
    """N when every reason is `VIEW_COUNT`'s with the same N found (every object of the source has N views, another
    count than the conversion's), else None."""
    counts = {int(m["found"]) if (m := _VIEW_COUNT.fullmatch(reason)) else None for reason in reasons}
    return counts.pop() if len(counts) == 1 and None not in counts else None


def _read_views(layout: Layout, files: Mapping[str, bytes], views: int,
                fix_colors: bool) -> tuple[list[bytes], np.ndarray, int, int]:
    """(images, latents (V, F) float64, width, height) of one folder's files, checked; AssetError if broken."""
    from PIL import Image

    found = _complete_views(files)
    if found is not None and found != views:
        raise AssetError(VIEW_COUNT.format(found=found, views=views))
    needed = [f"{kind}_{i}.{ext}" for i in range(views) for kind, ext in (("image", "jpg"), ("latent", "npy"))]
    missing = [name for name in needed if name not in files]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise AssetError(f"missing {shown} (expected {views} views)")
    if len(files) > len(needed):
        raise AssetError(f"{len(files) // 2} views where the dataset has {views} (extra: {sorted(set(files) - set(needed))[:4]})")
    images: list[bytes] = []
    latents: list[np.ndarray] = []
    checked_header = b""  # the .npy header (version 1) of a latent file already parsed and checked
    for i in range(views):
        image = files[f"image_{i}.jpg"]
        if not image.startswith(_JPEG_MAGIC):
            raise AssetError(f"image_{i}.jpg is not a JPEG file")
        data = files[f"latent_{i}.npy"]
        if checked_header and data.startswith(checked_header) and len(data) - len(checked_header) == latents[0].nbytes:
            # same header (dtype, shape) and size as the first latent file: parsing it again would give the same
            latents.append(np.frombuffer(data, latents[0].dtype, offset=len(checked_header)))
            images.append(image)
            continue
        latent = read_npy(data, f"latent_{i}.npy")
        if latent.shape != (len(layout.factors),) or latent.dtype.kind != "f":
            raise AssetError(
                f"latent_{i}.npy has shape {latent.shape} dtype {latent.dtype}; {layout.name} has "
                f"{len(layout.factors)} float latents per view"
            )
        if i == 0:
            checked_header = _npy_v1_header(data, latent.nbytes)
        images.append(image)
        latents.append(latent)
    table = np.stack(latents).astype(np.float64)
    if not np.all(np.isfinite(table)):
        raise AssetError("latents contain NaN or infinite values")
    try:
        width, height = Image.open(io.BytesIO(images[0])).size
    except Exception as exc:  # PIL raises many types for broken headers
        raise AssetError(f"image_0.jpg has an unreadable header ({exc})") from exc
    if fix_colors:
        try:
            images = [swap_red_blue(image) for image in images]
        except ValueError as exc:
            raise AssetError(f"a JPEG could not be decoded to fix its colours ({exc})") from exc
    return images, table, width, height


def _sample(layout: Layout, obj: ObjectFiles, views: int, fix_colors: bool, images: list[bytes], table: np.ndarray,
            width: int, height: int, rotations: np.ndarray) -> ObjectSample:
    from orbitset.datasets.sources import key_part

    meta = {
        "class_name": obj.synset,
        "class_index": obj.class_index,
        "num_views": views,
        "factor_names": [f[0] for f in layout.factors],
        "factor_units": [f[1] for f in layout.factors],
        "source": layout.name,
        "source_id": f"{obj.synset}/{obj.object_id}",
        "channel_order": "rgb" if fix_colors else "bgr",
        "channel_note": FIXED_NOTE.format(quality=FIX_QUALITY) if fix_colors else CHANNEL_NOTE,
    }
    return ObjectSample(
        key=f"{key_part(obj.synset)}__{key_part(obj.object_id)}",
        images=images,
        latents=table,
        rotations=rotations,
        camera=_camera(width, height),
        meta=meta,
        translations=np.einsum("vij,vj->vi", rotations, table[:, 7:10]) if layout.translation else None,
    )
