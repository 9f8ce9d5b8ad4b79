"""The object sample: all views of one object, as one WebDataset sample (docs/design.md, "The object sample").

Fields of a sample (the tar members are ``<key>.<field>``):

=====================  ============================================================================================
``000.jpg`` ...        view images, RGB, one per view (``.png`` or ``.webp`` where the recipe says); 3-digit index
``000.depth.png``      optional 16-bit depth per view; depth = value * ``meta["depth_unit"]`` scene units, 0 = none
``000.mask.png``       optional 8-bit object mask per view (255 = object)
``latents.npy``        (V, F) float64 factor values; names and units in ``meta["factor_names"]``/``["factor_units"]``
``rotations.npy``      (V, 3, 3) float64 object rotation per view (object frame -> world)
``translations.npy``   optional (V, 3) float64 object translation per view (world units)
``camera.json``        ``{"width", "height", "K": 3x3, "extrinsics": 4x4 or V x 4x4}`` (OpenCV, see geometry.py)
``points.npy``         optional (N, 6) float32: xyz and unit normal in the canonical normalised object frame
``meta.json``          ``class_name``, ``class_index``, ``num_views``, ``factor_names``, ``factor_units`` and more
``cls``                class index as decimal text
=====================  ============================================================================================

The key is ``<class>__<object>`` in ``[a-z0-9_-]``. Arrays are stored as ``.npy`` and always read with
``allow_pickle=False``; JSON is parsed with the json module. Nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from orbitset.errors import SchemaError

#: Version of the sample format; bump on an incompatible change and record it in meta.json.
SCHEMA_VERSION = 1
IMAGE_FORMATS = ("jpg", "png", "webp")
MAX_VIEWS = 1000
KEY_PATTERN = re.compile(r"^[a-z0-9_-]+__[a-z0-9_-]+$")
REQUIRED_META = ("class_name", "class_index", "num_views", "factor_names", "factor_units")

_VIEW_FIELD = re.compile(r"^(\d{3})\.(jpg|png|webp)$")
_LAYER_FIELD = re.compile(r"^(\d{3})\.(depth|mask)\.png$")
_FIXED_FIELDS = ("latents.npy", "rotations.npy", "translations.npy", "camera.json", "points.npy", "meta.json", "cls")


def view_field(index: int, image_format: str) -> str:
    """Field name of view `index`'s image, e.g. ``007.jpg``."""
    return f"{index:03d}.{image_format}"


def is_view_field(name: str) -> bool:
    """Whether field `name` is a view image (``007.jpg``, ``012.png``, ``003.webp``), not a layer or other field."""
    return _VIEW_FIELD.match(name) is not None


def layer_field(index: int, layer: str) -> str:
    """Field name of view `index`'s extra layer (``depth`` or ``mask``), e.g. ``007.depth.png``."""
    return f"{index:03d}.{layer}.png"


@dataclass
class ObjectSample:
    """All views of one object. Images, depths and masks stay encoded (bytes): decode only the views you use."""

    key: str
    images: list[bytes]
    latents: np.ndarray
    rotations: np.ndarray
    camera: dict[str, Any]
    meta: dict[str, Any]
    image_format: str = "jpg"
    translations: np.ndarray | None = None
    depths: list[bytes] | None = None
    masks: list[bytes] | None = None
    points: np.ndarray | None = None
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def num_views(self) -> int:
        return len(self.images)

    @property
    def label(self) -> int:
        return int(self.meta["class_index"])

    def validate(self) -> "ObjectSample":
        """Check names, shapes, dtypes and view counts; raise SchemaError naming the field. Returns self."""
        validate(self)
        return self

    def encode(self) -> dict[str, Any]:
        """The dict a WebDataset/`orbitset.shards` writer takes: ``__key__`` plus field name -> bytes."""
        return encode(self)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


#: The header ``np.save`` writes for a plain array: its dtype string, memory order and shape.
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), "
                         r"'shape': \(((?:\d+, )*\d*,?)\), \}[ ]*\n?")
#: numpy parses other headers with `ast`, which CPython 3.11 cannot run in two threads at once (gh-106905)
_AST_LOCK = threading.Lock()


def _plain_npy(data: bytes) -> np.ndarray | None:
    """A read-only view of the array in .npy `data` when its header is one ``np.save`` writes for a plain (not
    object, not structured) array, parsed without `ast`; None for any other header; EOFError when `data` is shorter
    than the array."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        return None
    if data[6] == 1:
        start, length = 10, int.from_bytes(data[8:10], "little")
    elif data[6] in (2, 3) and len(data) >= 12:
        start, length = 12, int.from_bytes(data[8:12], "little")
    else:
        return None
    header = _NPY_HEADER.fullmatch(data[start:start + length].decode("latin-1"))
    if header is None:
        return None
    dtype = np.dtype(header.group(1))
    if dtype.hasobject:
        return None
    shape = tuple(int(n) for n in header.group(3).replace(",", " ").split())
    count, offset = math.prod(shape), start + length
    if len(data) - offset < count * dtype.itemsize:
        raise EOFError(f"the array needs {count * dtype.itemsize} bytes, the data holds {len(data) - offset}")
    return np.frombuffer(data, dtype, count, offset).reshape(shape, order="F" if header.group(2) == "True" else "C")


def load_npy(data: bytes, what: str) -> np.ndarray:
    """Parse .npy bytes into a writable array without ever unpickling; a malformed or object-dtype array raises
    SchemaError. Safe to call from several threads at once."""
    try:
        array = _plain_npy(data)
        if array is not None:
            return array.copy(order="K")
        with _AST_LOCK:
            return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise SchemaError(f"{what}: not a plain numeric .npy array ({exc}); object arrays are refused") from exc
    except (EOFError, OSError, SyntaxError) as exc:  # empty data, unreadable header
        raise SchemaError(f"{what}: unreadable .npy data ({exc})") from exc


def read_npy(data: bytes, what: str) -> np.ndarray:
    """Like `load_npy`, but an array ``np.save`` wrote plainly is returned as a read-only view of `data` (no copy)."""
    try:
        array = _plain_npy(data)
    except EOFError:
        array = None  # `load_npy` names the problem
    return array if array is not None else load_npy(data, what)


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON bytes; malformed input raises SchemaError naming `what`."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{what}: invalid JSON ({exc})") from exc


def encode(sample: ObjectSample) -> dict[str, Any]:
    """Validate `sample` and encode it to ``{"__key__": key, field: bytes, ...}``."""
    validate(sample)
    out: dict[str, Any] = {"__key__": sample.key}
    for index, image in enumerate(sample.images):
        out[view_field(index, sample.image_format)] = bytes(image)
    for layer, blobs in (("depth", sample.depths), ("mask", sample.masks)):
        for index, blob in enumerate(blobs or ()):
            out[layer_field(index, layer)] = bytes(blob)
    out["latents.npy"] = _npy_bytes(sample.latents.astype(np.float64, copy=False))
    out["rotations.npy"] = _npy_bytes(sample.rotations.astype(np.float64, copy=False))
    if sample.translations is not None:
        out["translations.npy"] = _npy_bytes(sample.translations.astype(np.float64, copy=False))
    if sample.points is not None:
        out["points.npy"] = _npy_bytes(sample.points.astype(np.float32, copy=False))
    out["camera.json"] = _json_bytes(sample.camera)
    out["meta.json"] = _json_bytes(sample.meta)
    out["cls"] = str(sample.label).encode("ascii")
    for name, blob in sample.extra.items():
        out[name] = bytes(blob)
    return out


def decode(fields: Mapping[str, Any], validate_sample: bool = True) -> ObjectSample:
    """Build an ObjectSample from ``{"__key__": ..., field: bytes}`` (as read from a shard); images stay bytes.

    Unknown fields are kept in `extra`. Raises SchemaError naming the key and field for anything malformed.
    """
    key = fields.get("__key__")
    if not isinstance(key, str):
        raise SchemaError("sample has no '__key__' string; every sample needs its key")
    images: dict[int, bytes] = {}
    layers: dict[str, dict[int, bytes]] = {"depth": {}, "mask": {}}
    formats = set()
    extra: dict[str, bytes] = {}
    for name, value in fields.items():
        if name.startswith("__"):
            continue
        view = _VIEW_FIELD.match(name)
        layer = _LAYER_FIELD.match(name)
        if view:
            images[int(view.group(1))] = value
            formats.add(view.group(2))
        elif layer:
            layers[layer.group(2)][int(layer.group(1))] = value
        elif name not in _FIXED_FIELDS:
            extra[name] = value
    for required in ("latents.npy", "rotations.npy", "camera.json", "meta.json"):
        if required not in fields:
            raise SchemaError(f"sample {key!r}: field {required!r} is missing")
    if len(formats) > 1:
        raise SchemaError(f"sample {key!r}: views mix image formats {sorted(formats)}; use one format per sample")

    def ordered(blobs: dict[int, bytes], what: str) -> list[bytes]:
        if sorted(blobs) != list(range(len(blobs))):
            raise SchemaError(f"sample {key!r}: {what} indices {sorted(blobs)} are not 000..{len(blobs) - 1:03d}")
        return [blobs[i] for i in range(len(blobs))]

    sample = ObjectSample(
        key=key,
        images=ordered(images, "view image"),
        image_format=formats.pop() if formats else "jpg",
        latents=load_npy(fields["latents.npy"], f"sample {key!r} field 'latents.npy'"),
        rotations=load_npy(fields["rotations.npy"], f"sample {key!r} field 'rotations.npy'"),
        translations=load_npy(fields["translations.npy"], f"sample {key!r} field 'translations.npy'")
        if "translations.npy" in fields
        else None,
        points=load_npy(fields["points.npy"], f"sample {key!r} field 'points.npy'") if "points.npy" in fields else None,
        camera=load_json(fields["camera.json"], f"sample {key!r} field 'camera.json'"),
        meta=load_json(fields["meta.json"], f"sample {key!r} field 'meta.json'"),
        depths=ordered(layers["depth"], "depth layer") if layers["depth"] else None,
        masks=ordered(layers["mask"], "mask layer") if layers["mask"] else None,
        extra=extra,
    )
    if "cls" in fields:
        try:
            label = int(bytes(fields["cls"]).decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise SchemaError(f"sample {key!r} field 'cls': not a decimal class index ({exc})") from exc
        if isinstance(sample.meta, dict) and label != sample.meta.get("class_index"):
            raise SchemaError(
                f"sample {key!r} field 'cls': {label} disagrees with meta.json class_index {sample.meta.get('class_index')}"
            )
    if validate_sample:
        validate(sample)
    return sample


def _check_array(key: str, name: str, array: Any, shape: tuple, kinds: str) -> None:
    if not isinstance(array, np.ndarray):
        raise SchemaError(f"sample {key!r} field {name!r}: expected a numpy array, got {type(array).__name__}")
    if array.dtype.kind not in kinds:
        raise SchemaError(f"sample {key!r} field {name!r}: dtype {array.dtype} is not numeric (kinds {kinds!r})")
    if array.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, array.shape)):
        pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise SchemaError(f"sample {key!r} field {name!r}: shape {array.shape} does not match {pretty}")
    if not np.all(np.isfinite(array)):
        raise SchemaError(f"sample {key!r} field {name!r}: contains NaN or infinite values")


def _check_matrix(key: str, name: str, value: Any, shape: tuple[int, ...]) -> None:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise SchemaError(f"sample {key!r} field 'camera.json': {name!r} must be a finite {shape} matrix, got shape {array.shape}")


def validate(sample: ObjectSample) -> None:
    """Raise SchemaError naming the field if `sample` breaks the format; otherwise return None."""
    key = sample.key
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise SchemaError(f"sample key {key!r} must be '<class>__<object>' made of [a-z0-9_-] (no dots: webdataset cuts keys there)")
    if sample.image_format not in IMAGE_FORMATS:
        raise SchemaError(f"sample {key!r}: image format {sample.image_format!r} is not one of {IMAGE_FORMATS}")
    views = len(sample.images)
    if not 1 <= views <= MAX_VIEWS:
        raise SchemaError(f"sample {key!r}: {views} view images; a sample holds 1 to {MAX_VIEWS} views")
    for index, image in enumerate(sample.images):
        if not isinstance(image, (bytes, bytearray, memoryview)) or len(image) == 0:
            raise SchemaError(f"sample {key!r} field {view_field(index, sample.image_format)!r}: empty or not encoded bytes")
    _check_array(key, "latents.npy", sample.latents, (views, None), "fiu")
    _check_array(key, "rotations.npy", sample.rotations, (views, 3, 3), "f")
    rotations = sample.rotations.astype(np.float64)
    orthogonality = np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(3)).max()
    if orthogonality > 1e-5 or np.any(np.linalg.det(rotations) < 0):
        raise SchemaError(f"sample {key!r} field 'rotations.npy': matrices are not proper rotations (|R R^T - I| = {orthogonality:.2g})")
    if sample.translations is not None:
        _check_array(key, "translations.npy", sample.translations, (views, 3), "f")
    if sample.points is not None:
        _check_array(key, "points.npy", sample.points, (None, 6), "f")
    for layer, blobs in (("depth", sample.depths), ("mask", sample.masks)):
        if blobs is not None and len(blobs) != views:
            raise SchemaError(f"sample {key!r}: {len(blobs)} {layer} layers for {views} views; write one per view or none")

    meta = sample.meta
    if not isinstance(meta, dict):
        raise SchemaError(f"sample {key!r} field 'meta.json': expected an object, got {type(meta).__name__}")
    missing = [name for name in REQUIRED_META if name not in meta]
    if missing:
        raise SchemaError(f"sample {key!r} field 'meta.json': missing {missing}")
    if meta["num_views"] != views:
        raise SchemaError(f"sample {key!r} field 'meta.json': num_views {meta['num_views']} but {views} view images")
    factors = sample.latents.shape[1]
    for name in ("factor_names", "factor_units"):
        if not isinstance(meta[name], list) or len(meta[name]) != factors:
            raise SchemaError(f"sample {key!r} field 'meta.json': {name!r} must list {factors} entries, one per latents column")
    if not isinstance(meta["class_index"], int) or meta["class_index"] < 0:
        raise SchemaError(f"sample {key!r} field 'meta.json': class_index must be a non-negative integer")
    if sample.depths is not None and not isinstance(meta.get("depth_unit"), (int, float)):
        raise SchemaError(f"sample {key!r} field 'meta.json': depth layers need a numeric 'depth_unit' (scene units per level)")

    camera = sample.camera
    if not isinstance(camera, dict):
        raise SchemaError(f"sample {key!r} field 'camera.json': expected an object, got {type(camera).__name__}")
    for name in ("width", "height", "K", "extrinsics"):
        if name not in camera:
            raise SchemaError(f"sample {key!r} field 'camera.json': missing {name!r}")
    _check_matrix(key, "K", camera["K"], (3, 3))
    extrinsics = np.asarray(camera["extrinsics"], dtype=np.float64)
    if extrinsics.shape not in ((4, 4), (views, 4, 4)):
        raise SchemaError(
            f"sample {key!r} field 'camera.json': 'extrinsics' must be one 4x4 matrix or one per view ({views}x4x4), got {extrinsics.shape}"
        )
