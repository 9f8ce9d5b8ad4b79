"""Make the derived test assets of this folder from pybullet's duck (run from anywhere; needs trimesh and DracoPy).

- ``duck.glb``: the duck with its texture embedded (glTF, Y-up like the OBJ: vertices written as they are).
- ``duck_draco.glb``: the same, geometry compressed with Draco (KHR_draco_mesh_compression, by DracoPy).
- ``duck_colours.ply``: the duck with vertex colours sampled from its texture (PLY, written Z-up: the OBJ's
  (x, y, z) become (x, -z, y), so that it stands upright as PLY files are read).
- ``duck_modelnet.off``: 3546 of the duck's faces and 3514 vertices (the referenced ones, then copies of the last)
  with ModelNet's broken first line ``OFF3514 3546 0``.
"""

from pathlib import Path

import numpy as np
import trimesh

HERE = Path(__file__).resolve().parent


def main() -> None:
    duck = trimesh.load_mesh(HERE / "duck.obj", process=False)
    duck.export(HERE / "duck.glb")
    duck.export(HERE / "duck_draco.glb", extension_draco=True)
    coloured = trimesh.Trimesh(duck.vertices @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T, duck.faces,
                               vertex_colors=duck.visual.to_color().vertex_colors, process=False)
    coloured.export(HERE / "duck_colours.ply", encoding="binary")
    faces = np.asarray(duck.faces)[:3546]
    used = np.unique(faces)
    remap = np.full(len(duck.vertices), -1)
    remap[used] = np.arange(len(used))
    vertices = np.asarray(duck.vertices)[used]
    vertices = np.concatenate([vertices, np.repeat(vertices[-1:], 3514 - len(vertices), axis=0)])
    lines = ["OFF3514 3546 0"] + [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in remap[faces]]
    (HERE / "duck_modelnet.off").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
