"""Blender backend (bpy): the 3DIEBench scene as its original generator renders it, built once per process.

One file: building the scene, configuring Cycles and rendering a view all act on the same datablocks this backend
owns and removes; how an asset becomes Blender objects is `blender_assets`.

Only this module and `blender_assets` import bpy. The scene is built from a `SceneSpec` when the backend is created;
`set_asset` swaps the object (its parts and every datablock they used are removed, so memory does not grow; see
`blender_assets` for how files are imported); `render` only moves the object, the camera and the spot light and
changes colours, then renders with persistent data (no scene reload between views).

The scene matches SIE's generator (BlenderProc 2.8 defaults, REFERENCE.md "3DIEBench"):

- Colour management: the scene's view transform (3DIEBench: Filmic, BlenderProc's default), no look, exposure 0,
  gamma 1, no dithering. Recipe colours are linear RGB, given to materials and lights as they are.
- Floor: a purely diffuse material (what Cycles renders for the original's node-less material) of the view's colour.
- Object: the asset's own materials; objects without one get Cycles' default diffuse grey, as the original's OBJ
  files without MTL do. ``uniform`` appearance: one diffuse grey (0.8) material, the same look.
- Lights: a sun and a spot light whose radius (soft size) comes from the scene (3DIEBench: 0.25).
- Cycles: at most the preset's samples, adaptive threshold 0.01, 3 diffuse bounces, glossy, transmission and volume
  bounces 0, light tree off, OpenImageDenoise with albedo and normal guides (BlenderProc's compositor denoiser).
- Camera: the spec's field of view across the larger image side (sensor fit AUTO), posed from the view's OpenCV
  world-to-camera extrinsics with `geometry.opencv_to_blender_pose`; so `SceneSpec.intrinsics()` and the view's
  extrinsics project the object onto the image exactly as Blender draws it.
- Depth: distance along the camera's z axis (planar depth), in scene units, 0 where a ray hits nothing. Cycles'
  Depth pass already is planar depth for perspective cameras (checked by the tests against the projected mesh).
- Mask: the object index pass (pass index 1 on every part), thresholded; True where the object is the first hit.
- Pixels come back through a private temporary directory (PNG for RGB, 32-bit EXR for passes) that is emptied after
  every view and removed by `close`; the backend returns arrays and never leaves files.

Presets:

- ``exact``: 3DIEBench's sampling (at most 100 samples).
- ``fast``: the same scene with at most 16 samples and the denoiser's fast guide prefilter (docs/performance.md
  gives its speed and SSIM against ``exact``).
- ``workbench``: the Workbench engine (studio lighting, textures and material colours, floor colour from the
  recipe, no spot light or shadows): a fast preview, not the 3DIEBench look.

Device: Cycles uses the GPU (OptiX, else CUDA) when Blender finds one, else the CPU; ``threads`` fixes the CPU
thread count (default: all cores).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbitset import geometry
from orbitset._optional import require
from orbitset.errors import RenderError
from orbitset.render.scene import Backend, RenderedView, SceneSpec, ViewState

if TYPE_CHECKING:
    from orbitset.datasets.sources import LoadedAsset
    from orbitset.render.backends.blender_assets import BlenderParts

OBJECT_PASS_INDEX = 1
OBJECT_GREY = 0.8  # Cycles' default surface: diffuse, this grey
_NO_HIT_DEPTH = 1e9  # Blender writes 1e10 in the depth pass where nothing is hit


@contextlib.contextmanager
def quiet_stdout():
    """Send Blender's per-render log lines ("Fra:1 ... Sample", "Saved: ...") to /dev/null so progress bars stay
    readable; they are written by C code to file descriptor 1, so the descriptor itself is redirected."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()  # what Python code printed meanwhile (e.g. the glTF importer's log) goes to /dev/null too
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class Preset:
    """Render settings. `samples`, `adaptive_threshold` and `denoising_prefilter` (how OpenImageDenoise cleans its
    albedo and normal guides: "ACCURATE" as BlenderProc's denoiser, or "FAST") apply to Cycles only; the rest of the
    Cycles setup is 3DIEBench's for every preset."""

    engine: str  # "CYCLES" or "BLENDER_WORKBENCH"
    samples: int = 0
    adaptive_threshold: float = 0.01
    denoising_prefilter: str = "ACCURATE"


#: Light paths of BlenderProc's defaults: (max, diffuse, glossy, transmission, volume, transparent) bounces.
BOUNCES = {"max_bounces": 3, "diffuse_bounces": 3, "glossy_bounces": 0, "transmission_bounces": 0,
           "volume_bounces": 0, "transparent_max_bounces": 8}

PRESETS: dict[str, Preset] = {
    "exact": Preset("CYCLES", samples=100),
    "fast": Preset("CYCLES", samples=16, denoising_prefilter="FAST"),
    "workbench": Preset("BLENDER_WORKBENCH"),
}


class BlenderBackend(Backend):
    """Render views of one object at a time with Blender.

    Each backend builds its own Blender scene (and datablocks) next to whatever else the process holds, so several
    backends (say, two presets) can live in one process; `close` removes everything the backend created.
    """

    name = "blender"

    def __init__(self, scene: SceneSpec, preset: str = "fast", device: str = "auto", threads: int | None = None):
        super().__init__(scene)
        if preset not in PRESETS:
            raise RenderError(f"unknown Blender preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if device not in ("auto", "cpu", "gpu"):
            raise RenderError(f"unknown device {device!r} for the Blender backend; choose 'auto', 'cpu' or 'gpu'")
        self.bpy = require("bpy", "the Blender render backend")
        self.preset_name = preset
        self.preset = PRESETS[preset]
        self._owned: list[tuple[str, object]] = []  # (bpy.data collection name, datablock), removed by close
        self._tmp = Path(tempfile.mkdtemp(prefix="orbitset-blender-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        self._closed = False
        self._parts: "BlenderParts | None" = None
        self.last_import: dict = {}
        self._passes: tuple[bool, bool] | None = None
        self.device = "CPU"
        try:
            self._build_scene(device, threads)
        except Exception:
            self.close()
            raise

    @classmethod
    def image_layers(cls, preset: str) -> tuple[str, ...]:
        """Cycles presets render depth and masks; Workbench renders RGB only."""
        return () if preset in PRESETS and PRESETS[preset].engine != "CYCLES" else ("depth", "mask")

    # --- scene construction (once per process) ------------------------------------------------------------------

    def _build_scene(self, device: str, threads: int | None) -> None:
        bpy = self.bpy
        spec = self.scene
        scene = self._new("scenes", "orbitset")
        self._bl_scene = scene
        render = scene.render
        render.engine = self.preset.engine
        render.resolution_x, render.resolution_y = spec.width, spec.height
        render.resolution_percentage = 100
        render.use_persistent_data = True
        render.dither_intensity = 0.0
        render.film_transparent = False
        if threads is not None:
            render.threads_mode, render.threads = "FIXED", int(threads)
        image = render.image_settings
        image.file_format, image.color_mode, image.color_depth, image.compression = "PNG", "RGB", "8", 0
        scene.display_settings.display_device = "sRGB"
        try:
            scene.view_settings.view_transform = spec.view_transform
        except TypeError:
            raise RenderError(f"this Blender has no view transform {spec.view_transform!r}; use 'Filmic' or 'Standard'") from None
        scene.view_settings.look = "None"
        scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
        if self.preset.engine == "CYCLES":
            self._configure_cycles(scene, device)
            self._build_compositor(scene)
        else:
            shading = scene.display.shading
            shading.light, shading.color_type = "STUDIO", "TEXTURE"

        world = self._new("worlds", "orbitset_world")  # Blender 5 creates world and material node trees by default
        background = world.node_tree.nodes["Background"]
        background.inputs["Color"].default_value = (*spec.background, 1.0)
        background.inputs["Strength"].default_value = 1.0
        world.color = spec.background
        scene.world = world

        camera_data = self._new("cameras", "orbitset_camera")
        camera_data.sensor_fit = "AUTO"
        camera_data.angle = spec.camera.fov
        camera_data.clip_start, camera_data.clip_end = 0.01, 10.0 * spec.floor.size
        self._camera = self._add_object("orbitset_camera", camera_data)
        scene.camera = self._camera

        self._floor_material, self._floor_diffuse = self._diffuse_material("orbitset_floor", (0.5, 0.5, 0.5))
        if spec.floor.enabled:
            half = spec.floor.size / 2.0
            floor_mesh = self._new("meshes", "orbitset_floor")
            floor_mesh.from_pydata([(-half, -half, 0), (half, -half, 0), (half, half, 0), (-half, half, 0)], [], [(0, 1, 2, 3)])
            floor_mesh.materials.append(self._floor_material)
            floor = self._add_object("orbitset_floor", floor_mesh)
            floor.location = (0.0, 0.0, spec.floor.z)

        sun_data = self._new("lights", "orbitset_sun", type="SUN")
        sun_data.energy, sun_data.angle = spec.sun.energy, spec.sun.angle
        sun = self._add_object("orbitset_sun", sun_data)
        sun.rotation_mode = "QUATERNION"
        sun.rotation_quaternion = self._track(np.asarray(spec.sun.direction, dtype=np.float64))

        spot_data = self._new("lights", "orbitset_spot", type="SPOT")
        spot_data.energy, spot_data.spot_size, spot_data.spot_blend = spec.spot.energy, spec.spot.spot_size, spec.spot.blend
        spot_data.shadow_soft_size = spec.spot.soft_size
        self._spot = self._add_object("orbitset_spot", spot_data)
        self._spot.rotation_mode = "QUATERNION"

        self._uniform_material, _ = self._diffuse_material("orbitset_uniform", (OBJECT_GREY,) * 3)

    def _configure_cycles(self, scene, device: str) -> None:
        cycles, preset = scene.cycles, self.preset
        cycles.samples = preset.samples
        cycles.use_adaptive_sampling = True
        cycles.adaptive_threshold = preset.adaptive_threshold
        for attribute, value in BOUNCES.items():
            setattr(cycles, attribute, value)
        cycles.use_light_tree = False
        cycles.use_denoising = True
        cycles.denoiser = "OPENIMAGEDENOISE"
        cycles.denoising_input_passes, cycles.denoising_prefilter = "RGB_ALBEDO_NORMAL", preset.denoising_prefilter
        cycles.seed, cycles.use_animated_seed = 0, False
        cycles.device = "CPU"
        if device != "cpu":
            gpu = self._enable_gpu()
            if gpu is not None:
                cycles.device, self.device = "GPU", gpu
            elif device == "gpu":
                raise RenderError("no CUDA or OptiX GPU found by Blender; use device='auto' or 'cpu'")

    def _enable_gpu(self) -> str | None:
        """Enable Blender's OptiX (else CUDA) devices; the backend's name or None when there is none."""
        preferences = self.bpy.context.preferences.addons["cycles"].preferences
        for kind in ("OPTIX", "CUDA"):
            try:
                preferences.compute_device_type = kind
            except TypeError:  # this Blender build lacks the backend
                continue
            with quiet_stdout():  # Blender logs the GPU libraries it cannot open
                preferences.get_devices()
            devices = [d for d in preferences.devices if d.type == kind]
            if devices:
                for d in preferences.devices:
                    d.use = d.type == kind
                return kind
        preferences.compute_device_type = "NONE"
        return None

    def _build_compositor(self, scene) -> None:
        """Render Layers -> File Output (32-bit EXR: depth, object index), run only when a view asks for them.

        Both passes stay enabled (their cost is negligible next to path tracing, and toggling them would make
        Cycles rebuild its film); only the compositor is switched on and off per view."""
        layer = scene.view_layers[0]
        layer.use_pass_z = layer.use_pass_object_index = True
        tree = self._new("node_groups", "orbitset_passes", "CompositorNodeTree")
        scene.compositing_node_group = tree
        layers = tree.nodes.new("CompositorNodeRLayers")
        layers.scene, layers.layer = scene, layer.name  # not the context scene: this backend's own
        output = tree.nodes.new("CompositorNodeGroupOutput") if "CompositorNodeGroupOutput" in dir(self.bpy.types) else None
        if output is not None:  # keep the render result (the RGB image) what the render layer produced
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            tree.links.new(layers.outputs["Image"], output.inputs[0])
        files = tree.nodes.new("CompositorNodeOutputFile")
        files.directory = str(self._tmp) + "/"
        files.file_name = "pass_"
        files.format.media_type = "IMAGE"
        files.format.file_format, files.format.color_depth = "OPEN_EXR", "32"
        for socket, item in (("Depth", "depth"), ("Object Index", "index")):
            files.file_output_items.new("FLOAT", item)
            tree.links.new(layers.outputs[socket], files.inputs[item])

    def _new(self, collection: str, *args, **kwargs):
        """Create a datablock in ``bpy.data.<collection>`` and remember it for `close`."""
        block = getattr(self.bpy.data, collection).new(*args, **kwargs)
        self._owned.append((collection, block))
        return block

    def _add_object(self, name: str, data):
        obj = self._new("objects", name, data)
        self._bl_scene.collection.objects.link(obj)
        return obj

    def _diffuse_material(self, name: str, rgb: tuple[float, float, float]):
        from orbitset.render.backends.blender_assets import diffuse_material

        material, diffuse = diffuse_material(self.bpy, name, rgb)
        self._owned.append(("materials", material))
        return material, diffuse

    @staticmethod
    def _track(direction: np.ndarray):
        """Quaternion turning an object's local -Z (where Blender lights and cameras point) towards `direction`."""
        from mathutils import Vector

        return Vector(direction.tolist()).to_track_quat("-Z", "Y")

    # --- per object -----------------------------------------------------------------------------------------------

    def set_asset(self, asset: "LoadedAsset") -> None:
        """Replace the object by `asset` (see `blender_assets.build_parts`); `last_import` then says how it was built."""
        from orbitset.render.backends.blender_assets import build_parts

        self._check_open()
        self._remove_parts()
        parts = build_parts(self.bpy, asset, self._bl_scene.collection, self._uniform_material)
        for obj in parts.objects:
            obj.pass_index = OBJECT_PASS_INDEX
        self._parts = parts
        self.last_import = dict(parts.report)

    def _remove_parts(self) -> None:
        if self._parts is not None:
            self.bpy.data.batch_remove(self._parts.datablocks)
            self._parts = None

    # --- per view -------------------------------------------------------------------------------------------------

    def render(self, view: ViewState, depth: bool = False, mask: bool = False) -> RenderedView:
        self._check_open()
        if self._parts is None:
            raise RenderError("Blender backend: call set_asset(asset) before render(view)")
        from mathutils import Matrix

        object_to_world = view.object_to_world()
        for obj, pose in zip(self._parts.objects, self._parts.poses):
            obj.matrix_world = Matrix((object_to_world @ pose).tolist())
        self._camera.matrix_world = Matrix(geometry.opencv_to_blender_pose(view.camera_extrinsics).tolist())
        floor_colour = (*(float(c) for c in view.floor_rgb), 1.0)
        self._floor_diffuse.inputs["Color"].default_value = floor_colour
        self._floor_material.diffuse_color = floor_colour
        spot_position = np.asarray(view.spot_position, dtype=np.float64)
        self._spot.location = spot_position.tolist()
        self._spot.rotation_quaternion = self._track(-spot_position)
        self._spot.data.color = tuple(view.spot_rgb)
        self._set_passes(depth, mask)
        rgb_path = self._tmp / "rgb.png"
        self._bl_scene.render.filepath = str(rgb_path)
        try:
            with quiet_stdout():
                self.bpy.ops.render.render(write_still=True, scene=self._bl_scene.name)
            result = RenderedView(rgb=self._read_png(rgb_path))
            if depth:
                planar = self._read_exr(self._tmp / "pass_depth.exr")
                result.depth = np.where(planar < _NO_HIT_DEPTH, planar, 0.0).astype(np.float32)
            if mask:
                result.mask = self._read_exr(self._tmp / "pass_index.exr") > OBJECT_PASS_INDEX - 0.5
        finally:
            for leftover in self._tmp.iterdir():
                leftover.unlink()
        return result

    def render_background(self, view: ViewState) -> np.ndarray:
        """uint8 (H, W, 3) RGB of `view` with the object hidden from the camera only: its shadows and the light it
        bounces stay (a background plate, to find the object in another renderer's image of the same view)."""
        self._check_open()
        if self._parts is None:
            raise RenderError("Blender backend: call set_asset(asset) before render_background(view)")
        for obj in self._parts.objects:
            obj.visible_camera = False
        try:
            return self.render(view).rgb
        finally:
            for obj in self._parts.objects:
                obj.visible_camera = True

    def _set_passes(self, depth: bool, mask: bool) -> None:
        if self._passes == (depth, mask):
            return
        if (depth or mask) and not self.image_layers(self.preset_name):
            raise RenderError(f"the {self.preset_name!r} preset renders RGB only; use 'fast' or 'exact' for depth and masks")
        self._bl_scene.render.use_compositing = depth or mask
        self._passes = (depth, mask)

    def _read_png(self, path: Path) -> np.ndarray:
        from PIL import Image

        if not path.is_file():
            raise RenderError(f"Blender did not write the rendered image {path}")
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()

    def _read_exr(self, path: Path) -> np.ndarray:
        """First channel of a 32-bit EXR written by the compositor, as float32 (H, W), top row first."""
        if not path.is_file():
            raise RenderError(f"Blender did not write the render pass {path}")
        image = self.bpy.data.images.load(str(path))
        try:
            width, height = image.size
            pixels = np.empty(width * height * image.channels, dtype=np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            self.bpy.data.images.remove(image)
        return np.ascontiguousarray(pixels.reshape(height, width, -1)[::-1, :, 0])

    # --- bookkeeping ----------------------------------------------------------------------------------------------

    def version(self) -> str:
        engine = "cycles" if self.preset.engine == "CYCLES" else "workbench"
        return f"blender {self.bpy.app.version_string} {engine} {self.preset_name}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cleanup()
        self._remove_parts()
        data = self.bpy.data
        for collection, block in reversed(self._owned):  # objects go before the data they use
            getattr(data, collection).remove(block)
        self._owned.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RenderError("this Blender backend is closed; create a new BlenderBackend")
