"""The `raster` backend: pyrender (OpenGL rasterisation), headless on OSMesa (CPU) or EGL (GPU), lit in NumPy.

It renders the 3DIEBench scene of `orbitset.render.scene` as Cycles lights it, deferred: pyrender rasterises flat
passes (the surface colour, sRGB-encoded; the normal of the side facing the camera; depth) and the object's depth
seen from the spot light, and `raster_shading` computes each pixel's light from them: the spot's soft-edged cone and
its soft shadows, the wide sun, the world and the floor's bounce onto the object, each term scaled by
`LIGHT_SCALES`, then Blender's Filmic curve and a slight blur for Cycles' pixel filter. The object shows its own
appearance (see `object_primitives`) or one grey diffuse material; material features Blender renders and this
backend cannot are recorded by `orbitset.render.appearance`. Depth is the camera-frame z (OpenCV, scene units), 0
where nothing is hit; the mask is True where the object is the first surface hit (the floor occludes it), over more
than half of the pixel where pyrender draws several samples per pixel.

pyrender 0.1.45 quirks handled here, not by pinning: it uses ``np.infty`` (removed in NumPy 2), and it needs
PyOpenGL >= 3.1.4 for OSMesa, while its metadata pins PyOpenGL 3.1.0; so the ``render`` extra cannot carry it and
it is installed with `PYRENDER_INSTALL` (scripts/setup.sh does). ``PYOPENGL_PLATFORM`` is set to ``egl`` when a CUDA device is visible and to
``osmesa`` otherwise, unless the caller set it already (it must be set before OpenGL is first imported).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orbitset import geometry
from orbitset._optional import require
from orbitset.errors import DependencyError, RenderError
from orbitset.render.appearance import diffuse_weight, lacks_materials, material_features
from orbitset.render.backends import raster_shading as shading
from orbitset.render.scene import Backend, RenderedView, SceneSpec, ViewState

if TYPE_CHECKING:
    from orbitset.datasets.sources import LoadedAsset

#: pyrender's own pins conflict with OSMesa's PyOpenGL, so it is installed without its dependencies (the extra has them).
PYRENDER_INSTALL = "pip install --no-deps pyrender==0.1.45"
#: Scale of each light term of `raster_shading` (spot, sun, world, floor bounce), and the gaussian blur (pixels) that
#: stands in for Cycles' pixel filter and denoiser. Fitted by
#: `benchmarks/raster_exposure.py`: least squares on per-pixel luminance against Blender's own renders (Cycles,
#: Filmic) of procedural objects, never the reference images that `benchmarks/fidelity.py` judges raster on.
LIGHT_SCALES = {"spot": 0.937, "sun": 1.16, "world": 1.03, "bounce": 0.805, "blur": 0.55}
CREASE_ANGLE = math.radians(60)  # smooth shading keeps edges sharper than this (files rarely say which are)
MAX_TEXTURE_SIZE = 2048  # texels per side at most (larger images are reduced by an integer factor, box filter)
OBJECT_COLOUR = (0.8, 0.8, 0.8)  # Blender's default material base colour (linear)
#: uint8 -> linear value of an sRGB-encoded component, and -> normal component of the normal pass's encoding
_DECODE_SRGB = shading.srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)
_DECODE_NORMAL = (np.arange(256) / 127.5 - 1.0).astype(np.float32)
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _gpu_visible() -> bool:
    return any(os.path.exists(f"/dev/nvidia{i}") for i in range(8)) and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != ""


def import_pyrender():
    """Import pyrender with a headless OpenGL platform and the NumPy 2 fix; DependencyError saying the commands that
    install it if it (or OpenGL) is missing."""
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl" if _gpu_visible() else "osmesa")
    if not hasattr(np, "infty"):
        np.infty = np.inf  # pyrender 0.1.45 still spells it this way
    try:
        return require("pyrender", "the raster render backend")
    except DependencyError as exc:
        raise DependencyError(
            f"the raster render backend needs pyrender and its dependencies ({exc.__cause__}); install them with: "
            f"pip install 'orbitset[render]' && {PYRENDER_INSTALL}"
        ) from exc.__cause__


class _ProgramsByContextAddress(dict):
    """pyrender's shader-program cache, keyed by the GL context's address instead of its Python object.

    pyrender keys compiled programs by ``OpenGL.contextdata.getContext()``. On OSMesa that returns a new ctypes pointer
    object for the same context on every call, so the stock cache never hits: it compiles and keeps two programs per
    render, and memory grows without bound over a long job.
    """

    @staticmethod
    def _key(key: tuple) -> tuple:
        context = key[0]
        if isinstance(context, ctypes._Pointer):
            context = ctypes.cast(context, ctypes.c_void_p).value
        return (context, *key[1:])

    def __contains__(self, key) -> bool:
        return super().__contains__(self._key(key))

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def __setitem__(self, key, value) -> None:
        super().__setitem__(self._key(key), value)


def _gl_pose(world_to_camera_cv: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera -> OpenGL camera/light pose (camera-to-world, looking down -z, y up)."""
    return np.linalg.inv(_GL_FROM_CV @ np.asarray(world_to_camera_cv, dtype=np.float64))


def _light_extrinsics(position: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera extrinsics of a camera at the spot light, looking along its axis (at the origin)."""
    forward = -position / np.linalg.norm(position)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.999 else np.array([0.0, 1.0, 0.0])
    return geometry.look_at(position, position + forward, up)


def _display(linear) -> np.ndarray:
    """Linear colour components -> the sRGB encoding the albedo pass draws (decoded after reading back)."""
    return shading.linear_to_srgb(np.asarray(linear, dtype=np.float64))


def _source_material(pyrender, material) -> "pyrender.MetallicRoughnessMaterial":
    """A trimesh material (OBJ `SimpleMaterial` or glTF `PBRMaterial`) as the albedo pass's flat material: its base
    colour sRGB-encoded (as its texture is), so the pass reads back as sRGB.

    OBJ: an image replaces ``Kd`` (as Blender's importer connects it); glTF: base colour factor times texture.
    Images over `MAX_TEXTURE_SIZE` texels per side are reduced to it (mipmapping would not show more).
    Colour factors are linear (Blender's importers give them to the shader as they are).
    """
    from trimesh.visual.material import PBRMaterial

    if isinstance(material, PBRMaterial):
        image = material.baseColorTexture
        factor = material.baseColorFactor
        factor = np.ones(4) if factor is None else np.asarray(factor, dtype=np.float64) / 255.0
    else:
        image = getattr(material, "image", None)
        factor = np.ones(4) if image is not None else np.asarray(material.diffuse, dtype=np.float64) / 255.0
    texture = None
    if image is not None:
        if max(image.size) > MAX_TEXTURE_SIZE:  # finer texels than any view shows: uploading them is the cost
            image = image.reduce(math.ceil(max(image.size) / MAX_TEXTURE_SIZE))
        texture = pyrender.Texture(source=np.asarray(image if image.mode == "RGBA" else image.convert("RGBA")),
                                  source_channels="RGBA")
    colour = np.concatenate([_display(factor[:3]), [1.0]])
    return pyrender.MetallicRoughnessMaterial(baseColorFactor=colour, baseColorTexture=texture)


def smooth_in_blender(path) -> bool:
    """Whether Blender's importer shades the file smoothly: OBJ with vertex normals or a smoothing group, glTF
    (normals are part of its meshes), PLY with normals; STL, OFF and built meshes are flat."""
    if path is None:
        return False
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return True
    if not path.is_file():
        return False
    if suffix == ".obj":
        return re.search(rb"^(vn\s|s\s+(?!off\b|0\b))", path.read_bytes(), re.MULTILINE) is not None
    if suffix == ".ply":
        with path.open("rb") as handle:
            header = handle.read(4096).split(b"end_header")[0]
        return b" nx" in header
    return False


def corner_normals(mesh, smooth: bool) -> np.ndarray:
    """(M, 3, 3) normal of each triangle corner: the face normal, or when `smooth` the area-weighted mean normal of
    the faces meeting at the corner's position unless it leans more than `CREASE_ANGLE` from the face's own."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
    flat = np.repeat(face_normals[:, None], 3, axis=1)
    if not smooth:
        return flat
    # positions equal to 6 decimals share a normal: rows compared as bytes (-0.0 made 0.0), sums in corner order
    rounded = np.ascontiguousarray(np.round(np.asarray(mesh.vertices, dtype=np.float64), 6) + 0.0)
    _, position = np.unique(rounded.view(np.dtype((np.void, rounded.itemsize * 3))).ravel(), return_inverse=True)
    corner_position = position.reshape(-1)[faces]
    weighted = np.repeat(face_normals * np.asarray(mesh.area_faces)[:, None], 3, axis=0)
    summed = np.stack([np.bincount(corner_position.ravel(), weights=weighted[:, axis], minlength=int(position.max()) + 1)
                       for axis in range(3)], axis=1)
    normals = summed[corner_position]
    normals /= np.maximum(np.linalg.norm(normals, axis=2, keepdims=True), 1e-12)
    sharp = (normals * face_normals[:, None]).sum(axis=2) < math.cos(CREASE_ANGLE)
    return np.where(sharp[..., None], flat, normals)


def object_primitives(pyrender, asset: "LoadedAsset", uniform_material) -> tuple:
    """(albedo, normals): `asset.mesh` as two pyrender primitives holding every triangle twice, once per winding,
    so that with back-face culling each triangle shows the side facing the camera (open sheets and inconsistently
    wound meshes render fully, as Blender renders both sides).

    The albedo primitive draws the surface colour, sRGB-encoded: from the mesh's visuals when `asset.appearance`
    is "source" (texture, material colour, vertex or face colours), `uniform_material` otherwise (and for files whose
    material library is missing, as Blender draws them). The normal
    primitive draws ``0.5 + 0.5 * n`` of the side facing the camera, n in the object frame: smooth where Blender's
    importer shades the file smoothly (`smooth_in_blender`, `corner_normals`), flat otherwise.
    """
    mesh = asset.mesh
    faces = np.asarray(mesh.faces, dtype=np.int64)
    both = np.concatenate([faces, faces[:, ::-1]])
    positions = np.asarray(mesh.vertices, dtype=np.float32)[both].reshape(-1, 3)
    corner = corner_normals(mesh, asset.appearance == "source" and smooth_in_blender(asset.path))
    normals = np.concatenate([corner, -corner[:, ::-1]]).reshape(-1, 3)
    kind = getattr(mesh.visual, "kind", None) if asset.appearance == "source" and not lacks_materials(asset) else None
    texcoords = colours = None
    material = uniform_material
    if kind == "texture":
        uv = mesh.visual.uv
        if uv is not None and len(uv) == len(mesh.vertices):
            texcoords = np.asarray(uv, dtype=np.float32)[both].reshape(-1, 2)
        material = _source_material(pyrender, mesh.visual.material)
        if texcoords is None:
            material.baseColorTexture = None
    elif kind == "vertex":
        colours = np.asarray(mesh.visual.vertex_colors, dtype=np.float32)[both].reshape(-1, 4) / 255.0
    elif kind == "face":
        colours = np.repeat(np.concatenate([np.asarray(mesh.visual.face_colors, dtype=np.float32)] * 2), 3, axis=0) / 255.0
    if colours is not None:
        colours[:, 3] = 1.0
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0))
    white = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0))
    encoded = np.concatenate([0.5 + 0.5 * normals, np.ones((len(normals), 1))], axis=1).astype(np.float32)
    return (
        pyrender.Primitive(positions=positions, texcoord_0=texcoords, color_0=colours, material=material, mode=4),
        pyrender.Primitive(positions=positions, color_0=encoded, material=white, mode=4),  # GL_TRIANGLES
    )


class RasterBackend(Backend):
    """pyrender backend; build once per worker, `set_asset` per object, `render` per view."""

    name = "raster"

    def __init__(self, scene: SceneSpec, preset: str = "fast"):
        super().__init__(scene)
        self.preset = preset
        self._pyrender = import_pyrender()
        pyrender = self._pyrender
        self._lights = shading.SceneLights.of(scene)
        self._scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 1.0))
        K = scene.intrinsics()
        far = 4.0 * (scene.camera.distance + scene.floor.size)
        # pyrender puts pixel centres at +0.5: shift the principal point so that K keeps OpenCV's integer centres.
        self._camera = pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, znear=0.01, zfar=far)
        self._camera_node = self._scene.add(self._camera, pose=np.eye(4))
        # the spot's depth map: the cone and the widest disk of the light seen from near the object, at image size
        spot = scene.spot
        half = spot.spot_size / 2 + math.asin(min(spot.soft_size / max(spot.radius - 1.5, 0.5), 1.0)) + 0.02
        self._light_K = geometry.intrinsics_from_fov(2 * half, scene.width, scene.height)
        Kl = self._light_K
        light_camera = pyrender.IntrinsicsCamera(Kl[0, 0], Kl[1, 1], Kl[0, 2] + 0.5, Kl[1, 2] + 0.5, znear=0.05,
                                                 zfar=2.0 * (spot.radius + scene.camera.distance))
        self._light_camera_node = self._scene.add(light_camera, pose=np.eye(4))
        self._scene.main_camera_node = self._camera_node
        self._floor_node = None
        if scene.floor.enabled:
            import trimesh

            half_size = scene.floor.size / 2
            z = scene.floor.z
            plane = trimesh.Trimesh(
                vertices=[[-half_size, -half_size, z], [half_size, -half_size, z], [half_size, half_size, z], [-half_size, half_size, z]],
                faces=[[0, 1, 2], [0, 2, 3]],
                process=False,
            )
            material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(0.0, 0.0, 0.0, 1.0))
            floor_mesh = pyrender.Mesh.from_trimesh(plane, material=material, smooth=False)
            self._floor_node = self._scene.add(floor_mesh)
        self._object_material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(*_display(OBJECT_COLOUR[:3]), 1.0))
        self._object_node = self._normal_node = None
        rows, cols = np.indices((scene.height, scene.width), dtype=np.float64)
        #: camera-frame point per pixel at planar depth 1 (OpenCV), (3, H * W), for positions from the depth buffer
        rays = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(rows)])
        self._rays = rays.reshape(3, -1).astype(np.float32)
        self._renderer = pyrender.OffscreenRenderer(scene.width, scene.height)
        programs = self._renderer._renderer._program_cache
        programs._program_cache = _ProgramsByContextAddress(programs._program_cache)
        #: whether pyrender draws several samples per pixel (framebuffers, as on EGL) or one (OSMesa's own buffer)
        self._multisampled = self._renderer._platform.supports_framebuffers()
        self._blas = require("threadpoolctl", "the raster render backend").ThreadpoolController()
        self._compile_textured_pass()

    def _compile_textured_pass(self) -> None:
        """Draw one textured triangle off-scene, so that the per-process work of the first textured object (the
        textured shader program, and OSMesa's compiled mipmap and sampling code) is done here once per worker, not
        inside the first object's `set_asset`/`render`. Leaves nothing behind."""
        pyrender = self._pyrender
        texture = pyrender.Texture(source=np.full((4, 4, 4), 255, dtype=np.uint8), source_channels="RGBA")
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), baseColorTexture=texture)
        triangle = pyrender.Primitive(positions=np.array([[-1, -1, -2], [1, -1, -2], [0, 1, -2]], dtype=np.float32),
                                      texcoord_0=np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32),
                                      material=material, mode=4)
        scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 1.0))
        scene.add(pyrender.Mesh([triangle]))
        scene.add(self._camera, pose=np.eye(4))
        self._renderer.render(scene, flags=pyrender.RenderFlags.FLAT)

    def _one_blas_thread(self):
        """A context in which BLAS runs on one thread: the arrays here are small, and idle BLAS threads would spin on
        the cores OpenGL and other render workers need."""
        return self._blas.limit(limits=1, user_api="blas")

    def set_asset(self, asset: "LoadedAsset") -> None:
        with self._one_blas_thread():
            self._set_asset(asset)

    def _set_asset(self, asset: "LoadedAsset") -> None:
        for node in (self._object_node, self._normal_node):
            if node is not None:
                self._scene.remove_node(node)
        self._object_node = self._normal_node = None
        #: uint8 sRGB -> the object's linear diffuse colour (scaled by 1 - transmission, see `diffuse_weight`)
        self._decode_albedo = _DECODE_SRGB * np.float32(diffuse_weight(material_features(asset)))
        albedo, normals = object_primitives(self._pyrender, asset, self._object_material)
        self._object_node = self._scene.add(self._pyrender.Mesh([albedo]), pose=np.eye(4))
        self._normal_node = self._scene.add(self._pyrender.Mesh([normals]), pose=np.eye(4))

    def _passes(self, view: ViewState, seen: bool = True,
                mask: bool = False) -> tuple[shading.Passes, np.ndarray, np.ndarray | None]:
        """Rasterise the albedo, normal and spot-depth passes of `view` (see `raster_shading.Passes`); also the planar
        depth (H, W) and, when `mask`, the object's mask (H, W). With `seen` False the object is left out of what the
        camera sees but still casts its shadow."""
        flat = self._pyrender.RenderFlags.FLAT
        pose = view.object_to_world()
        for node in (self._object_node, self._normal_node):
            self._scene.set_pose(node, pose)
        self._scene.set_pose(self._camera_node, _gl_pose(view.camera_extrinsics))
        self._object_node.mesh.is_visible, self._normal_node.mesh.is_visible = seen, False
        albedo_rgb, z = self._renderer.render(self._scene, flags=flat)
        height, width = z.shape
        count = height * width
        if seen:
            self._object_node.mesh.is_visible, self._normal_node.mesh.is_visible = False, True
            encoded, _ = self._renderer.render(self._scene, flags=flat)
            self._normal_node.mesh.is_visible = False
            encoded = encoded.reshape(count, 3)
        else:
            encoded = np.zeros((count, 3), dtype=np.uint8)
        world_to_light = _light_extrinsics(np.asarray(view.spot_position, dtype=np.float64))
        self._object_node.mesh.is_visible = True
        if self._floor_node is not None:
            self._floor_node.mesh.is_visible = False
        self._scene.main_camera_node = self._light_camera_node
        self._scene.set_pose(self._light_camera_node, _gl_pose(world_to_light))
        try:
            light_depth = self._renderer.render(self._scene, flags=self._pyrender.RenderFlags.DEPTH_ONLY)
        finally:
            self._scene.main_camera_node = self._camera_node
            if self._floor_node is not None:
                self._floor_node.mesh.is_visible = True
        hit = z.reshape(count) > 0
        on_object = hit & ((encoded[:, 0].astype(np.uint16) + encoded[:, 1] + encoded[:, 2]) > 24)
        drawn = np.flatnonzero(on_object)
        normal = np.zeros((3, count), dtype=np.float32)
        normal[2] = 1.0
        object_normal = np.asarray(view.rotation, dtype=np.float32) @ _DECODE_NORMAL[encoded[drawn]].T
        normal[:, drawn] = object_normal / np.maximum(np.linalg.norm(object_normal, axis=0), 1e-6)
        to_world = np.linalg.inv(np.asarray(view.camera_extrinsics, dtype=np.float64)).astype(np.float32)
        position = (to_world[:3, :3] @ self._rays) * z.reshape(count) + to_world[:3, 3:]
        albedo = np.empty((3, count), dtype=np.float32)
        albedo[:] = np.asarray(view.floor_rgb, dtype=np.float32)[:, None]
        albedo[:, drawn] = self._decode_albedo[albedo_rgb.reshape(count, 3)[drawn]].T
        passes = shading.Passes(
            position=position, normal=normal, albedo=albedo, hit=hit, on_object=on_object, shape=(height, width),
            light_depth=np.asarray(light_depth, dtype=np.float32), light_K=self._light_K, world_to_light=world_to_light,
        )
        return passes, z, self._mask(on_object.reshape(height, width)) if mask else None

    def _mask(self, on_object: np.ndarray) -> np.ndarray:
        """The object's mask, from the normal pass's `on_object` where pyrender draws one sample per pixel (OSMesa:
        the object is the first surface hit at the pixel's centre), else from a flat render of the object white
        and the floor black, its multisampled edges cut at half coverage."""
        if not self._multisampled:
            return on_object
        nodes = {self._object_node: (255, 255, 255)}
        if self._floor_node is not None:
            nodes[self._floor_node] = (0, 0, 0)
        segmentation, _ = self._renderer.render(self._scene, flags=self._pyrender.RenderFlags.SEG, seg_node_map=nodes)
        return segmentation[..., 0] > 127

    def lighting(self, view: ViewState, seen: bool = True,
                 mask: bool = False) -> tuple[shading.Lighting, np.ndarray, np.ndarray | None]:
        """The unscaled light of `view` (`raster_shading.Lighting`), its planar depth (H, W) and, when `mask`, the
        object's mask (H, W); with `seen` False the object only casts its shadow. `compose` makes the image."""
        if self._object_node is None:
            raise RenderError("raster backend: set_asset must be called before render")
        passes, z, object_mask = self._passes(view, seen, mask)
        lighting = shading.light(passes, np.asarray(view.spot_position, dtype=np.float64),
                                 np.asarray(view.spot_rgb, dtype=np.float64),
                                 np.asarray(view.floor_rgb, dtype=np.float64), self.scene.floor.z, self._lights)
        return lighting, z, object_mask

    @staticmethod
    def compose(lighting: shading.Lighting, scales: dict[str, float]) -> np.ndarray:
        """uint8 (H, W, 3) RGB of `lighting` with its terms scaled by `scales` and blurred by its "blur"."""
        return shading.display(lighting.radiance(scales), scales["blur"])

    def render(self, view: ViewState, depth: bool = False, mask: bool = False) -> RenderedView:
        with self._one_blas_thread():
            lighting, z, object_mask = self.lighting(view, mask=mask)
            rgb = self.compose(lighting, LIGHT_SCALES)
        return RenderedView(rgb=rgb, depth=np.asarray(z, dtype=np.float32) if depth else None, mask=object_mask)

    def render_background(self, view: ViewState) -> np.ndarray:
        """uint8 (H, W, 3) RGB of `view` with the object hidden from the camera only: its shadow stays (a background
        plate, to find the object in another renderer's image of the same view)."""
        with self._one_blas_thread():
            return self.compose(self.lighting(view, seen=False)[0], LIGHT_SCALES)

    def version(self) -> str:
        return f"pyrender {self._pyrender.__version__} ({os.environ.get('PYOPENGL_PLATFORM', 'default')})"

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None
