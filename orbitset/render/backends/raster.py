"""The `raster` backend: pyrender (OpenGL rasterisation), headless on OSMesa (CPU) or EGL (GPU).

It approximates the 3DIEBench scene of `orbitset.render.scene`: the object (its own appearance, see
`object_primitive`, or one grey diffuse material), a large floor plane of the view's
colour, a sun (directional light) and a coloured spot light with its cone, seen by the camera of the view. Light
energies are mapped to pyrender intensities by fixed factors chosen so that images are exposed like Blender's; shadows
and bounces are not modelled. Depth is the camera-frame z (OpenCV, scene units), 0 where nothing is hit; the mask
is a flat render of the object alone with the floor as occluder (True where the object is the first surface hit).

pyrender 0.1.45 quirks handled here, not by pinning: it uses ``np.infty`` (removed in NumPy 2), and it needs
PyOpenGL >= 3.1.4 for OSMesa, while its metadata pins PyOpenGL 3.1.0; so the ``render`` extra cannot carry it and
it is installed with `PYRENDER_INSTALL` (scripts/setup.sh does). ``PYOPENGL_PLATFORM`` is set to ``egl`` when a CUDA device is visible and to
``osmesa`` otherwise, unless the caller set it already (it must be set before OpenGL is first imported).
"""

from __future__ import annotations

import ctypes
import math
import os
from typing import TYPE_CHECKING

import numpy as np

from orbitset import geometry
from orbitset._optional import require
from orbitset.errors import DependencyError, RenderError
from orbitset.render.scene import Backend, RenderedView, SceneSpec, ViewState

if TYPE_CHECKING:
    from orbitset.datasets.sources import LoadedAsset

#: pyrender's own pins conflict with OSMesa's PyOpenGL, so it is installed without its dependencies (the extra has them).
PYRENDER_INSTALL = "pip install --no-deps pyrender==0.1.45"
#: Blender spot watts -> pyrender candela-like intensity, sun W/m^2 -> pyrender lux-like intensity, and ambient light:
#: one exposure, fitted so that floors and objects come out as bright as in the original 3DIEBench generator's
#: images (Cycles, Filmic) of the same meshes and latents.
SPOT_INTENSITY_PER_WATT = 0.023
SUN_INTENSITY_PER_UNIT = 0.92
AMBIENT = 0.19
OBJECT_COLOUR = (0.8, 0.8, 0.8, 1.0)  # Blender's default material base colour
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


def _direction_pose(direction: np.ndarray) -> np.ndarray:
    """A pose whose -z axis points along `direction` (for pyrender's directional and spot lights)."""
    forward = np.asarray(direction, dtype=np.float64)
    forward = forward / np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.999 else np.array([0.0, 1.0, 0.0])
    return _gl_pose(geometry.look_at(np.zeros(3), forward, up))


def _linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _source_material(pyrender, material) -> "pyrender.MetallicRoughnessMaterial":
    """A trimesh material (OBJ `SimpleMaterial` or glTF `PBRMaterial`) as a pyrender material.

    OBJ: an image replaces ``Kd`` (as Blender's importer connects it), roughness ``1 - sqrt(Ns / 1000)`` (idem).
    glTF: base colour factor times texture, its metallic and roughness factors. Alpha: a texture with transparent
    texels is cut at 0.5 (glTF's MASK mode); partial transparency is rendered opaque.
    """
    from trimesh.visual.material import PBRMaterial

    if isinstance(material, PBRMaterial):
        image = material.baseColorTexture
        factor = material.baseColorFactor
        factor = np.ones(4) if factor is None else np.asarray(factor, dtype=np.float64) / 255.0
        metallic = 0.0 if material.metallicFactor is None else float(material.metallicFactor)
        roughness = 1.0 if material.roughnessFactor is None else float(material.roughnessFactor)
    else:
        image = getattr(material, "image", None)
        factor = np.ones(4) if image is not None else np.asarray(material.diffuse, dtype=np.float64) / 255.0
        metallic = 0.0
        roughness = 1.0 - math.sqrt(min(max(float(getattr(material, "glossiness", 0.0) or 0.0), 0.0), 1000.0) / 1000.0)
    texture, mode = None, "OPAQUE"
    if image is not None:
        texels = np.asarray(image.convert("RGBA"))
        texture = pyrender.Texture(source=texels, source_channels="RGBA")
        mode = "MASK" if texels[..., 3].min() < 128 else "OPAQUE"
    return pyrender.MetallicRoughnessMaterial(
        baseColorFactor=np.clip(factor, 0.0, 1.0), baseColorTexture=texture, metallicFactor=metallic,
        roughnessFactor=roughness, alphaMode=mode, alphaCutoff=0.5,
    )


def object_primitive(pyrender, asset: "LoadedAsset", uniform_material) -> "pyrender.Primitive":
    """`asset.mesh` as one flat-shaded pyrender primitive holding every triangle twice, once per winding, so that
    with back-face culling each triangle shows the side facing the camera, lit with its normal turned towards it
    (open sheets and inconsistently wound meshes render fully). Appearance from the mesh's visuals when
    `asset.appearance` is "source" (texture, material colour, vertex or face colours), `uniform_material` otherwise.
    """
    mesh = asset.mesh
    faces = np.asarray(mesh.faces, dtype=np.int64)
    both = np.concatenate([faces, faces[:, ::-1]])
    face_normals = np.asarray(mesh.face_normals, dtype=np.float64)
    positions = np.asarray(mesh.vertices, dtype=np.float32)[both].reshape(-1, 3)
    normals = np.repeat(np.concatenate([face_normals, -face_normals]), 3, axis=0).astype(np.float32)
    kind = getattr(mesh.visual, "kind", None) if asset.appearance == "source" else None
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
        rgba = np.asarray(mesh.visual.vertex_colors, dtype=np.float64)[both].reshape(-1, 4) / 255.0
        colours = np.concatenate([_linear(rgba[:, :3]), np.ones((len(rgba), 1))], axis=1).astype(np.float32)
    elif kind == "face":
        rgba = np.asarray(mesh.visual.face_colors, dtype=np.float64) / 255.0
        colours = np.repeat(np.concatenate([_linear(rgba[:, :3])] * 2), 3, axis=0)
        colours = np.concatenate([colours, np.ones((len(colours), 1))], axis=1).astype(np.float32)
    if colours is not None:
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(1.0, 1.0, 1.0, 1.0), metallicFactor=0.0, roughnessFactor=1.0)
    return pyrender.Primitive(
        positions=positions, normals=normals, texcoord_0=texcoords, color_0=colours, material=material, mode=4,  # GL_TRIANGLES
    )


class RasterBackend(Backend):
    """pyrender backend; build once per worker, `set_asset` per object, `render` per view."""

    name = "raster"

    def __init__(self, scene: SceneSpec, preset: str = "fast"):
        super().__init__(scene)
        self.preset = preset
        self._pyrender = import_pyrender()
        pyrender = self._pyrender
        self._scene = pyrender.Scene(bg_color=(*scene.background, 1.0), ambient_light=(AMBIENT,) * 3)
        K = scene.intrinsics()
        far = 4.0 * (scene.camera.distance + scene.floor.size)
        # pyrender puts pixel centres at +0.5: shift the principal point so that K keeps OpenCV's integer centres.
        self._camera = pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, znear=0.01, zfar=far)
        self._camera_node = self._scene.add(self._camera, pose=np.eye(4))
        self._floor_material = None  # pyrender deep-copies materials: keep the floor primitive's own one
        self._floor_node = None
        if scene.floor.enabled:
            import trimesh

            half = scene.floor.size / 2
            plane = trimesh.Trimesh(
                vertices=[[-half, -half, scene.floor.z], [half, -half, scene.floor.z], [half, half, scene.floor.z], [-half, half, scene.floor.z]],
                faces=[[0, 1, 2], [0, 2, 3]],
                process=False,
            )
            material = pyrender.MetallicRoughnessMaterial(baseColorFactor=(0.5, 0.5, 0.5, 1.0), metallicFactor=0.0, roughnessFactor=1.0)
            floor_mesh = pyrender.Mesh.from_trimesh(plane, material=material, smooth=False)
            self._floor_material = floor_mesh.primitives[0].material
            self._floor_node = self._scene.add(floor_mesh)
        sun = scene.sun
        self._scene.add(
            pyrender.DirectionalLight(color=np.ones(3), intensity=sun.energy * SUN_INTENSITY_PER_UNIT),
            pose=_direction_pose(np.asarray(sun.direction)),
        )
        spot = scene.spot
        outer = spot.spot_size / 2
        self._spot = pyrender.SpotLight(
            color=np.ones(3), intensity=spot.energy * SPOT_INTENSITY_PER_WATT,
            innerConeAngle=outer * (1.0 - spot.blend), outerConeAngle=outer,
        )
        self._spot_node = self._scene.add(self._spot, pose=np.eye(4))
        self._object_material = pyrender.MetallicRoughnessMaterial(baseColorFactor=OBJECT_COLOUR, metallicFactor=0.0, roughnessFactor=1.0)
        self._object_node = None
        self._renderer = pyrender.OffscreenRenderer(scene.width, scene.height)
        programs = self._renderer._renderer._program_cache
        programs._program_cache = _ProgramsByContextAddress(programs._program_cache)

    def set_asset(self, asset: "LoadedAsset") -> None:
        if self._object_node is not None:
            self._scene.remove_node(self._object_node)
            self._object_node = None
        primitive = object_primitive(self._pyrender, asset, self._object_material)
        self._object_node = self._scene.add(self._pyrender.Mesh([primitive]), pose=np.eye(4))

    def render(self, view: ViewState, depth: bool = False, mask: bool = False) -> RenderedView:
        if self._object_node is None:
            raise RenderError("raster backend: set_asset must be called before render")
        pyrender = self._pyrender
        self._scene.set_pose(self._object_node, view.object_to_world())
        self._scene.set_pose(self._camera_node, _gl_pose(view.camera_extrinsics))
        if self._floor_material is not None:
            self._floor_material.baseColorFactor = np.array([*view.floor_rgb, 1.0])
        self._spot.color = np.asarray(view.spot_rgb, dtype=np.float64)
        spot_position = np.asarray(view.spot_position, dtype=np.float64)
        spot_pose = _direction_pose(-spot_position)
        spot_pose[:3, 3] = spot_position
        self._scene.set_pose(self._spot_node, spot_pose)
        rgb, z = self._renderer.render(self._scene)
        object_mask = None
        if mask:
            nodes = {self._object_node: (255, 255, 255)}
            if self._floor_node is not None:
                nodes[self._floor_node] = (0, 0, 0)
            segmentation, _ = self._renderer.render(self._scene, flags=pyrender.RenderFlags.SEG, seg_node_map=nodes)
            object_mask = segmentation[..., 0] > 127
        return RenderedView(
            rgb=np.ascontiguousarray(rgb[..., :3], dtype=np.uint8),
            depth=np.asarray(z, dtype=np.float32) if depth else None,
            mask=object_mask,
        )

    def version(self) -> str:
        return f"pyrender {self._pyrender.__version__} ({os.environ.get('PYOPENGL_PLATFORM', 'default')})"

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

