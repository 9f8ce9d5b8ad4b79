"""The render job: a pure function (asset, recipe, seed, object) -> object sample. It writes no files.

`render_object` loads and checks the mesh (AssetError for a missing, unreadable, empty, non-finite or too large one),
draws (or takes) the per-view latents, renders every view with the given backend, encodes images and layers, samples
the point cloud, counts badly framed views (`framing_counts`, a warning recorded in meta.json, not a failure), and
returns a validated `ObjectSample` whose meta.json records the object's rotation group (`orbitset.symmetry`).
`run_task` wraps it for executors: any orbitset error (or an
unexpected exception of the renderer) becomes a recorded failure instead of stopping the dataset.
"""

from __future__ import annotations

import io
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orbitset.datasets.sources import AssetRef, AssetSource, LoadedAsset
from orbitset.errors import AssetError, OrbitsetError
from orbitset.render import factors
from orbitset.render.appearance import appearance_notes
from orbitset.render.points import surface_points
from orbitset.render.recipes import Recipe
from orbitset.render.scene import Backend
from orbitset.schema import SCHEMA_VERSION, ObjectSample
from orbitset.symmetry.records import record_of_asset

#: Default limit on mesh faces; larger meshes are recorded as failures.
MAX_FACES = 2_000_000


@dataclass(frozen=True)
class JobSpec:
    """What every object of a dataset shares: the source, the recipe, the seed, the class list and the renderer."""

    source: AssetSource
    recipe: Recipe
    seed: int
    classes: tuple[str, ...]
    backend: str = "raster"
    preset: str = "fast"
    max_faces: int = MAX_FACES
    appearance: str = "source"
    up_axis: str | None = None  # None: each file's own (see orbitset.datasets.mesh_files)


@dataclass(frozen=True)
class ObjectTask:
    """One object to render; `latents` (V, F) replaces sampling when views are given (``--factors-from``)."""

    ref: AssetRef
    latents: np.ndarray | None = None


@dataclass
class ObjectResult:
    """An encoded sample (``{"__key__": ..., field: bytes}``) or the reason it failed."""

    key: str
    fields: dict[str, Any] | None
    reason: str = ""
    views: int = 0
    seconds: float = 0.0
    framing: dict[str, int] = field(default_factory=dict)
    appearance_notes: list[str] = field(default_factory=list)


def encode_image(rgb: np.ndarray, image_format: str, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) RGB -> JPEG (baseline, not progressive), PNG or WebP bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if image_format == "jpg":
        image.save(buffer, format="JPEG", quality=quality, progressive=False, optimize=False)
    elif image_format == "webp":
        image.save(buffer, format="WEBP", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_depth(depth: np.ndarray, unit: float) -> bytes:
    """float (H, W) depth in scene units -> 16-bit PNG of round(depth / unit), clipped to 65535; 0 stays 0."""
    from PIL import Image

    levels = np.clip(np.round(np.nan_to_num(depth, nan=0.0) / unit), 0, 65535).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    """bool (H, W) -> 8-bit PNG, 255 where True."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


#: A view whose object mask covers less than this fraction of the image is counted as "small".
SMALL_OBJECT_FRACTION = 0.005


def framing_counts(masks: list[np.ndarray]) -> dict[str, int]:
    """Views whose object mask is empty, touches the image border, or covers less than SMALL_OBJECT_FRACTION of the
    image (non-empty), counted by kind; kinds with no such view are left out."""
    counts = {"empty": 0, "touches_border": 0, "small": 0}
    for mask in masks:
        covered = float(mask.mean())
        if covered == 0.0:
            counts["empty"] += 1
            continue
        if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
            counts["touches_border"] += 1
        if covered < SMALL_OBJECT_FRACTION:
            counts["small"] += 1
    return {kind: count for kind, count in counts.items() if count}


def points_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of object `key`'s point cloud (independent of its views' generators)."""
    return np.random.default_rng([int(seed), factors.stable_hash("points/" + key)])


def load_checked(job: JobSpec, ref: AssetRef) -> LoadedAsset:
    """`ref` loaded as the job asks (appearance, up axis); AssetError for a mesh that cannot be rendered."""
    asset = job.source.load(ref, appearance=job.appearance, up_axis=job.up_axis)
    if len(asset.mesh.faces) > job.max_faces:
        raise AssetError(
            f"{ref.source_id}: {len(asset.mesh.faces)} faces exceed the face limit {job.max_faces}; raise --max-faces to render it"
        )
    return asset


def render_object(job: JobSpec, backend: Backend, ref: AssetRef, latents: np.ndarray | None = None) -> ObjectSample:
    """Render all views of one object; raises an OrbitsetError (AssetError, RenderError, ...) when it cannot."""
    recipe = job.recipe
    asset = load_checked(job, ref)
    if latents is None:
        latents = factors.sample_views(recipe, job.seed, ref.key)
    latents = np.asarray(latents, dtype=np.float64)
    scene = recipe.scene_spec()
    states = factors.view_states(recipe, latents, scene)
    rotations = np.stack([s.rotation for s in states])
    translations = factors.translations_of(recipe, latents, rotations)
    want_depth, want_mask = "depth" in recipe.layers, "mask" in recipe.layers
    check_framing = "mask" in backend.image_layers(job.preset)
    backend.set_asset(asset)
    images, depths, masks, object_masks = [], [], [], []
    for state in states:
        view = backend.render(state, depth=want_depth, mask=want_mask or check_framing)
        images.append(encode_image(view.rgb, recipe.image_format, recipe.jpeg_quality))
        if want_depth:
            depths.append(encode_depth(view.depth, recipe.depth_unit))
        if want_mask:
            masks.append(encode_mask(view.mask))
        if check_framing:
            object_masks.append(view.mask)
    meta = {
        "class_name": ref.class_name,
        "class_index": job.classes.index(ref.class_name),
        "num_views": len(states),
        "factor_names": recipe.factor_names,
        "factor_units": recipe.factor_units,
        "euler_convention": recipe.euler if recipe.rotation == "euler" else None,
        "translation_frame": recipe.translation_frame if translations is not None else None,
        "source": job.source.name,
        "source_id": ref.source_id,
        "asset": asset.to_json(),
        "symmetry": record_of_asset(asset, ref.source_id),
        "appearance_notes": appearance_notes(asset),
        "framing": framing_counts(object_masks) if check_framing else None,
        "recipe": recipe.name,
        "recipe_hash": recipe.hash(),
        "seed": job.seed,
        "renderer": backend.version(),
        "preset": job.preset,
        "image_size": [scene.width, scene.height],
        "schema_version": SCHEMA_VERSION,
    }
    if want_depth:
        meta["depth_unit"] = recipe.depth_unit
    sample = ObjectSample(
        key=ref.key,
        images=images,
        image_format=recipe.image_format,
        latents=latents,
        rotations=rotations,
        translations=translations,
        camera={
            "width": scene.width,
            "height": scene.height,
            "K": scene.intrinsics().tolist(),
            "extrinsics": [s.camera_extrinsics.tolist() for s in states],
        },
        meta=meta,
        depths=depths or None,
        masks=masks or None,
        points=surface_points(asset.mesh, recipe.points, points_rng(job.seed, ref.key)) if "points" in recipe.layers else None,
    )
    return sample.validate()


def run_task(job: JobSpec, backend: Backend, task: ObjectTask) -> ObjectResult:
    """`render_object` for an executor: the encoded sample, or the failure reason (never raises for one object)."""
    start = time.perf_counter()
    try:
        sample = render_object(job, backend, task.ref, task.latents)
        return ObjectResult(
            task.ref.key, sample.encode(), views=sample.num_views, seconds=time.perf_counter() - start,
            framing=sample.meta["framing"] or {}, appearance_notes=sample.meta["appearance_notes"],
        )
    except OrbitsetError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a renderer bug on one mesh must not stop the dataset; keep the cause
        last = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__} in {last.name} ({last.filename.rsplit('/', 1)[-1]}:{last.lineno}): {exc}"
    return ObjectResult(task.ref.key, None, reason=reason, seconds=time.perf_counter() - start)
