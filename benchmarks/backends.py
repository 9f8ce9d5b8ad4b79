"""Backend agreement benchmark (not a test): raster against Blender on third-party meshes, and each one's speed.

The corpus is meshes shipped by installed packages and the repository (nobody here wrote them): `pybullet_data`
(pybullet's wheel; OBJ and STL files, collision hulls, ground planes and the 1000 random URDF rocks left out, then
every `--stride`-th file in sorted order, plus the files `ALWAYS` names), and ``tests/data/assets`` (OBJ+MTL, glTF,
Draco glTF, PLY with vertex colours, ModelNet OFF). Every object gets `--views` views of 3DIEBench's factors (seed
`--seed`, keyed by the object) at `--size` px with its own appearance, rendered by raster and by Blender
(`--blender-preset`, default `exact`: 3DIEBench's sampling). Blender's images are cached under `--cache` keyed by (file, factors, preset, size), so a second
run re-renders raster only.

Printed: per object the mean absolute difference (grey levels, over pixels, channels and views) raster vs Blender,
with the appearance notes the raster backend records for it (`appearance_notes`: what one backend renders that the
other cannot); the median over objects; the objects above `--outlier` and whether each has a note. Then images/s of
raster, Blender ``fast`` and Blender ``exact`` on the same `--timing-objects` objects and views, all rendered in this
run (no cache), with the projection of each to 3DIEBench's 2.6 M images at 256 px in core-hours
(``cpu seconds per image x 2.6e6 / 3600``).

    PYTHONPATH=. .venv/bin/python benchmarks/backends.py [--stride 8] [--views 2] [--size 256] [--seed 0]
        [--blender-preset exact] [--cache /tmp/orbitset-backends] [--outlier 12] [--timing-objects 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import cached_rgb  # noqa: E402  (benchmarks/render.py)

REPO = Path(__file__).resolve().parents[1]
#: pybullet_data files always in the corpus (their materials differ between the backends' importers).
ALWAYS = ("table/table.obj", "table_square/table.obj", "jenga/jenga.obj", "objects/mug.obj", "duck.obj",
          "lego/lego.obj", "domino/domino.obj", "bunny.obj", "teddy_large.obj", "sphere2.obj", "cube.obj")
LEFT_OUT = ("random_urdfs/", "vhacd", "collision", "_col.", "plane", "/lores", "_lores")
IMAGES_3DIEBENCH = 2_600_000


@dataclass(frozen=True)
class Entry:
    """One corpus object: the source it is loaded from and its reference there."""

    name: str
    source: object
    ref: object


def listed_files(root: Path, relative: list[str]):
    """A file source over the listed files under `root` (class: first folder; id: the rest, suffix kept)."""
    from orbitset.datasets.mesh_sources import FileSource
    from orbitset.datasets.sources import AssetRef, key_part

    class ListedFiles(FileSource):
        name = "listed"

        def _scan(self):
            for name in relative:
                parts = Path(name).parts
                class_name = key_part(parts[0] if len(parts) > 1 else root.name)
                yield AssetRef(class_name, key_part("/".join(parts[1:] or parts)), name), root / name, None

    return ListedFiles(root)


def corpus(stride: int) -> list[Entry]:
    """The corpus (see the module docstring), in a deterministic order."""
    from orbitset.datasets.mesh_files import MESH_SUFFIXES

    folders: list[tuple[str, Path, list[str]]] = []
    try:
        import pybullet_data
    except ImportError:
        print("pybullet is not installed (pip install -e .[corpus]): the corpus has tests/data/assets only")
    else:
        root = Path(pybullet_data.getDataPath())
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
        kept = [f for f in files if not any(part in f.lower() for part in LEFT_OUT)]
        chosen = kept[::stride] + [f for f in ALWAYS if f in files and f not in kept[::stride]]
        folders.append(("pybullet_data", root, chosen))
    assets = REPO / "tests" / "data" / "assets"
    folders.append(("tests/data/assets", assets, sorted(p.name for p in assets.iterdir() if p.suffix.lower() in MESH_SUFFIXES)))
    entries = []
    for label, root, names in folders:
        source = listed_files(root, names)
        entries += [Entry(f"{label}/{ref.source_id}", source, ref) for ref in source.objects()]
    return entries


def cache_path(cache: Path, entry: Entry, latents: np.ndarray, preset: str, size: int) -> Path:
    digest = hashlib.sha256(f"{entry.name}|{preset}|{size}".encode() + latents.astype("<f8").tobytes()).hexdigest()
    return cache / f"{preset}-{size}px" / f"{digest[:24]}.npz"


def blender_images(backend, asset, states, path: Path) -> np.ndarray:
    """Blender's (V, H, W, 3) images of `asset`, from `path` when cached there."""
    def render() -> np.ndarray:
        backend.set_asset(asset)
        return np.stack([backend.render(state).rgb for state in states])

    return cached_rgb(path, render)


def timed(backend, assets, states) -> tuple[float, float, int]:
    """(wall s, CPU s of this process, images) to set each asset and render its views."""
    wall, cpu, count = time.perf_counter(), time.process_time(), 0
    for asset, asset_states in zip(assets, states):
        backend.set_asset(asset)
        for state in asset_states:
            backend.render(state)
            count += 1
    return time.perf_counter() - wall, time.process_time() - cpu, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stride", type=int, default=8, help="every N-th pybullet_data file (sorted)")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blender-preset", default="exact", help="the Blender preset raster is compared with")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/orbitset-backends"))
    parser.add_argument("--outlier", type=float, default=12.0, help="grey levels")
    parser.add_argument("--timing-objects", type=int, default=2)
    parser.add_argument("--blender-only", action="store_true", help="fill the Blender cache, compare nothing")
    parser.add_argument("--out", type=Path, default=None, help="write backends.json and a contact sheet here")
    args = parser.parse_args()

    from orbitset.errors import AssetError
    from orbitset.render.appearance import appearance_notes
    from orbitset.render import factors
    from orbitset.render.backends import get_backend
    from orbitset.render.recipes import get_recipe

    recipe = get_recipe("3diebench").with_overrides(size=args.size, views=args.views)
    scene = recipe.scene_spec()
    entries = corpus(args.stride)
    print(f"corpus: {len(entries)} objects x {args.views} views, {args.size} px, seed {args.seed}; "
          f"blender preset {args.blender_preset!r}; load average {os.getloadavg()[0]:.1f}")
    blender = get_backend("blender", scene, args.blender_preset)
    raster = None if args.blender_only else get_backend("raster", scene, "fast")
    rows, pairs = [], []
    try:
        for index, entry in enumerate(entries):
            try:
                asset = entry.source.load(entry.ref)
            except AssetError as exc:
                print(f"  skipped {entry.name}: {exc}")
                continue
            latents = factors.sample_views(recipe, args.seed, entry.ref.key)
            states = factors.view_states(recipe, latents, scene)
            start = time.perf_counter()
            reference = blender_images(blender, asset, states, cache_path(args.cache, entry, latents, args.blender_preset, args.size))
            if raster is None:
                print(f"  [{index + 1}/{len(entries)}] {entry.name}: {time.perf_counter() - start:.1f} s", flush=True)
                continue
            raster.set_asset(asset)
            ours = np.stack([raster.render(state).rgb for state in states])
            difference = float(np.abs(ours.astype(np.float64) - reference).mean())
            notes = appearance_notes(asset)
            rows.append({"object": entry.name, "mad": difference, "appearance_notes": notes})
            pairs.append((reference[0], ours[0]))
            print(f"  {difference:6.2f}  {entry.name}" + (f"  [{'; '.join(notes)}]" if notes else ""), flush=True)
    finally:
        blender.close()
    if raster is None:
        return
    raster.close()
    mads = np.array([r["mad"] for r in rows])
    outliers = [r for r in rows if r["mad"] > args.outlier]
    print(f"\nmedian per-object raster-vs-blender difference: {np.median(mads):.2f} grey levels over {len(rows)} objects "
          f"(mean {mads.mean():.2f}, max {mads.max():.2f})")
    print(f"objects above {args.outlier:g}: {len(outliers)}, {sum(1 for r in outliers if not r['appearance_notes'])} "
          "without a recorded reason")
    for r in outliers:
        print(f"  {r['mad']:6.2f}  {r['object']}: {'; '.join(r['appearance_notes']) or 'NO RECORDED REASON'}")

    timing = timing_run(args, recipe, scene, entries)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "backends.json").write_text(json.dumps({"objects": rows, "timing": timing}, indent=1))
        contact_sheet(pairs, args.out / "contact-backends.png")
        print(f"wrote {args.out / 'backends.json'} and {args.out / 'contact-backends.png'}")


def timing_run(args, recipe, scene, entries) -> dict:
    """images/s and CPU s/image of raster, Blender fast and Blender exact on the same objects, rendered now."""
    from orbitset.render import factors
    from orbitset.render.backends import get_backend

    chosen = entries[: args.timing_objects]
    assets = [e.source.load(e.ref) for e in chosen]
    states = [factors.view_states(recipe, factors.sample_views(recipe, args.seed, e.ref.key), scene) for e in chosen]
    timing = {}
    print(f"\nspeed on {len(chosen)} objects x {args.views} views at {args.size} px (load average "
          f"{os.getloadavg()[0]:.1f}); core-hours for {IMAGES_3DIEBENCH / 1e6:.1f} M images = CPU s/image x images / 3600")
    for label, name, preset in (("raster", "raster", "fast"), ("blender fast", "blender", "fast"),
                                ("blender exact", "blender", "exact")):
        backend = get_backend(name, scene, preset)
        try:
            backend.set_asset(assets[0])
            backend.render(states[0][0])  # warm-up: shader compilation, Cycles kernels
            wall, cpu, count = timed(backend, assets, states)
        finally:
            backend.close()
        timing[label] = {"images_per_s": count / wall, "cpu_s_per_image": cpu / count,
                         "core_hours_3diebench": cpu / count * IMAGES_3DIEBENCH / 3600}
        print(f"  {label:14} {count / wall:8.3f} images/s  {cpu / count:7.3f} CPU s/image  "
              f"{timing[label]['core_hours_3diebench']:9.0f} core-hours")
    ratio = timing["raster"]["images_per_s"] / timing["blender exact"]["images_per_s"]
    print(f"  raster / exact images/s: {ratio:.0f}x; raster / fast: "
          f"{timing['raster']['images_per_s'] / timing['blender fast']['images_per_s']:.0f}x")
    return timing


def contact_sheet(pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, columns: int = 8) -> None:
    """Blender over raster, the first view of each object, `columns` objects a row."""
    from PIL import Image

    size = pairs[0][0].shape[0]
    rows = -(-len(pairs) // columns)
    sheet = Image.new("RGB", (columns * size, rows * 2 * size), "white")
    for i, (reference, ours) in enumerate(pairs):
        x, y = (i % columns) * size, (i // columns) * 2 * size
        sheet.paste(Image.fromarray(reference), (x, y))
        sheet.paste(Image.fromarray(ours), (x, y + size))
    sheet.save(path)


if __name__ == "__main__":
    main()
