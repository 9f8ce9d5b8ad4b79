"""Fidelity benchmark (not a test): orbitset against images made by the original 3DIEBench generator.

For each reference set under `--data` (default: benchmarks/data/3diebench-generator, see its README), the meshes of
``meshes/`` are rendered with the views recorded in ``renders/`` (read as ``--factors-from`` reads them) by each
preset (``exact`` and ``fast`` on the blender backend, ``raster``), at the original's 256 px. The original JPEGs
have red and blue swapped; they are swapped back before any comparison. Per view and on average it prints:

- ``ssim``: mean SSIM of the luminance (0.299 R + 0.587 G + 0.114 B), 11x11 gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, over the window positions inside the image (`benchmarks/render.py`'s `ssim`);
- ``mad``: mean absolute difference per channel (R, G, B), in grey levels;
- ``iou``: orbitset's object mask against the mask derived from the original image by `mask_from_image` (a
  difference to orbitset's background plate of the same view, rendered by the first preset with the object hidden
  from the camera); the rule is checked on every orbitset render, whose true mask is known (``rule_iou``: the rule
  on orbitset's image and plate against orbitset's mask: raster renders, and Blender's, which have soft shadows);
- ``hue``: floor-hue error, the circular difference of the median hue of floor pixels (outside both masks, grown by
  3 px) between orbitset's image and the original, in hue units (1 = a full turn);
- images/s (wall clock, on a shared machine) and CPU seconds per image (all threads, less sensitive to other load),
  counting `set_asset` and `render` of every view once the backend is built; and the whole machine's images/s:
  Blender's as measured (Cycles renders on every core), raster's with `--processes` processes rendering the set
  `--rounds` times each, all at once (raster draws on one core; `orbitset render --workers N` runs one per core).

Targets: exact mean SSIM >= 0.985 on primitives and >= 0.95 on textured, mask IoU >= 0.95; fast within 0.01 SSIM of
exact at >= 4x its images/s; raster SSIM >= 0.99 on primitives and >= 0.985 on textured at >= 100x exact's images/s
(each preset's speed-up over exact: one process's wall clock, CPU time and the whole machine's images/s, is printed
as ``PRESET vs exact``). Writes ``fidelity.json`` and one contact sheet per set (``contact-SET.png``: original |
exact | fast | raster per view) under `--out`.

    PYTHONPATH=. .venv/bin/python benchmarks/fidelity.py [--sets primitives textured] [--presets exact fast raster]
        [--out runs/fidelity] [--threads N] [--processes N] [--rounds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import ssim  # noqa: E402  (benchmarks/render.py: one SSIM for every benchmark)

DATA = Path(__file__).resolve().parent / "data" / "3diebench-generator"
PRESETS = {"exact": ("blender", "exact"), "fast": ("blender", "fast"), "raster": ("raster", "fast")}
#: A pixel differs from the background plate when some channel differs by more than this (grey levels).
DIFFERENCE_THRESHOLD = 10.0
FLOOR_MARGIN = 3  # px grown around both masks before floor pixels are taken


def mask_from_image(rgb: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The object's mask in `rgb`, given `plate`: the same view rendered by orbitset with the object hidden from the
    camera (its shadows and bounced light kept). Rule:

    1. object = pixels whose colour differs from the plate by more than DIFFERENCE_THRESHOLD in some channel,
       opened by one pixel (isolated noise) and with holes filled;
    2. each pixel on the outline (one pixel either side) is object when its colour is closer to the mean of the
       object pixels in its 5x5 neighbourhood than to the plate's colour there, i.e. when more than half of it is
       covered."""
    from scipy import ndimage

    image, background = (np.asarray(a, dtype=np.float64) for a in (rgb, plate))
    differs = np.abs(image - background).max(axis=2) > DIFFERENCE_THRESHOLD
    obj = ndimage.binary_fill_holes(ndimage.binary_opening(differs))
    outline = (obj & ~ndimage.binary_erosion(obj)) | (~obj & ndimage.binary_dilation(obj))
    core = obj & ~outline
    box = np.ones((5, 5))
    count = ndimage.convolve(core.astype(np.float64), box, mode="constant")
    total = np.stack([ndimage.convolve(image[..., c] * core, box, mode="constant") for c in range(3)], axis=2)
    object_colour = total / np.maximum(count, 1)[..., None]
    closer = np.linalg.norm(image - object_colour, axis=2) < np.linalg.norm(image - background, axis=2)
    return np.where(outline & (count > 0), closer, obj)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def floor_hue_error(rgb: np.ndarray, original: np.ndarray, masks: list[np.ndarray]) -> float:
    """Circular difference of the median floor hue of two images (hue in [0, 1)); floor = outside all masks + margin."""
    from scipy import ndimage

    grown = ndimage.binary_dilation(np.logical_or.reduce(masks), iterations=FLOOR_MARGIN)
    hues = []
    for image in (rgb, original):
        pixels = np.asarray(image, dtype=np.float64)[~grown] / 255.0
        top, bottom = pixels.max(axis=1), pixels.min(axis=1)
        chroma = np.maximum(top - bottom, 1e-9)
        r, g, b = pixels.T
        hue = np.where(top == r, (g - b) / chroma % 6, np.where(top == g, (b - r) / chroma + 2, (r - g) / chroma + 4)) / 6
        angles = 2 * np.pi * hue  # circular median: of angles relative to the circular mean
        mean = np.angle(np.exp(1j * angles).mean())
        hues.append((mean + np.median(np.angle(np.exp(1j * (angles - mean))))) / (2 * np.pi))
    difference = abs(hues[0] - hues[1]) % 1.0
    return float(min(difference, 1.0 - difference))


def read_original(path: Path) -> np.ndarray:
    """The original JPEG as RGB (its red and blue swapped back)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))[..., ::-1].copy()


def prepare_set(root: Path, preset: str, threads: int | None) -> tuple:
    """(backend, [(ref, asset, view states)]) for every recorded object of set `root` with `preset`'s backend built."""
    from orbitset.datasets.mesh_sources import ShapeNetSource
    from orbitset.render import factors
    from orbitset.render.backends import get_backend
    from orbitset.render.backends.blender import BlenderBackend
    from orbitset.render.recipes import get_recipe
    from orbitset.render.recorded import match_recorded, read_recorded_factors

    recipe = get_recipe("3diebench")
    source = ShapeNetSource(root / "meshes")
    refs, latents, _, missing = match_recorded(read_recorded_factors(root / "renders", recipe), source.objects())
    if missing:
        raise SystemExit(f"{root}: recorded objects missing from its meshes: {[m.object for m in missing]}")
    scene = recipe.scene_spec()
    backend_name, backend_preset = PRESETS[preset]
    if backend_name == "blender":
        backend = BlenderBackend(scene, preset=backend_preset, threads=threads)
    else:
        backend = get_backend(backend_name, scene, backend_preset)
    return backend, [(ref, source.load(ref), factors.view_states(recipe, latents[ref.key], scene)) for ref in refs]


def timed_renders(backend, objects: list, plates: bool = False) -> tuple[list, list, float, float]:
    """Each object's views rendered (with masks) after its `set_asset`, and when `plates` their background plates:
    (views per object, plates per object, wall s, CPU s), timing `set_asset` and `render` only."""
    rendered, backgrounds, wall, cpu = [], [], 0.0, 0.0
    for _, asset, states in objects:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        backend.set_asset(asset)
        rendered.append([backend.render(state, mask=True) for state in states])
        wall += time.perf_counter() - start_wall
        cpu += time.process_time() - start_cpu
        backgrounds.append([background_plate(backend, state) for state in states] if plates else [])
    return rendered, backgrounds, wall, cpu


def render_set(root: Path, preset: str, threads: int | None) -> tuple[list[dict], dict]:
    """Render every recorded view of set `root` with `preset`; per-view records (with images) and timings."""
    backend, objects = prepare_set(root, preset, threads)
    try:
        rendered, plates, wall, cpu = timed_renders(backend, objects, plates=True)
        records = [{"object": ref.source_id, "view": index, "rgb": view.rgb, "mask": view.mask, "plate": plate}
                   for (ref, _, _), views, object_plates in zip(objects, rendered, plates)
                   for index, (view, plate) in enumerate(zip(views, object_plates))]
        version = backend.version()
    finally:
        backend.close()
    return records, {"images_per_s": len(records) / wall, "cpu_s_per_image": cpu / len(records), "renderer": version}


def _throughput_worker(root: Path, preset: str, rounds: int, barrier, results) -> None:
    """One process of `machine_images_per_s`: build, wait for the others, render the set `rounds` times, report
    (start, end, images)."""
    backend, objects = prepare_set(root, preset, threads=1)
    try:
        barrier.wait()
        start, images = time.perf_counter(), 0
        for _ in range(rounds):
            rendered, _, _, _ = timed_renders(backend, objects)
            images += sum(len(views) for views in rendered)
        results.put((start, time.perf_counter(), images))
    finally:
        backend.close()


def machine_images_per_s(root: Path, preset: str, processes: int, rounds: int) -> float:
    """Images/s of the whole machine for a single-threaded backend: `processes` spawned processes each render every
    view of set `root` `rounds` times, all at once (as `orbitset render --workers N` runs them); all images over the
    span from the first start to the last end (CLOCK_MONOTONIC, shared by the processes)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_throughput_worker, args=(root, preset, rounds, barrier, results), daemon=True)
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    spans = []
    while len(spans) < processes:
        try:
            spans.append(results.get(timeout=5))
        except queue.Empty:
            if any(worker.exitcode not in (None, 0) for worker in workers):
                raise SystemExit(f"a {preset} throughput process failed (its error is printed above)") from None
    for worker in workers:
        worker.join()
    span = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    return sum(images for _, _, images in spans) / span


def background_plate(backend, state) -> np.ndarray:
    """`state` rendered without the object: hidden from the camera (Blender, shadows kept), or moved far below the
    floor (backends without shadows)."""
    if hasattr(backend, "render_background"):
        return backend.render_background(state)
    return backend.render(dataclasses.replace(state, translation=np.array([0.0, 0.0, -1e3]))).rgb


def compare(records: list[dict], plates: list[np.ndarray], root: Path) -> list[dict]:
    """Per-view figures of `records` against the original images; `plates` are the background plates the original's
    masks are derived with (orbitset's most exact renderer's)."""
    rows = []
    for record, plate in zip(records, plates):
        original = read_original(root / "renders" / record["object"] / f"image_{record['view']}.jpg")
        derived = mask_from_image(original, plate)
        rgb, mask = record["rgb"], record["mask"]
        rows.append({
            "object": record["object"],
            "view": record["view"],
            "ssim": ssim(rgb, original),
            "mad": np.abs(rgb.astype(np.float64) - original).mean(axis=(0, 1)).tolist(),
            "iou": iou(mask, derived),
            "rule_iou": iou(mask_from_image(rgb, record["plate"]), mask),
            "hue": floor_hue_error(rgb, original, [mask, derived]),
        })
    return rows


def summary(rows: list[dict]) -> dict:
    return {
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "mad": np.mean([r["mad"] for r in rows], axis=0).tolist(),
        "iou": float(np.mean([r["iou"] for r in rows])),
        "rule_iou": float(np.mean([r["rule_iou"] for r in rows])),
        "hue": float(np.mean([r["hue"] for r in rows])),
    }


def contact_sheet(root: Path, renders: dict[str, list[dict]], path: Path) -> None:
    """One row per view: original | each preset's render, labelled."""
    from PIL import Image, ImageDraw

    presets = list(renders)
    first = renders[presets[0]]
    size = first[0]["rgb"].shape[0]
    sheet = Image.new("RGB", (size * (1 + len(presets)), 16 + size * len(first)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(["original"] + presets):
        draw.text((column * size + 4, 2), label, fill="black")
    for row, record in enumerate(first):
        original = read_original(root / "renders" / record["object"] / f"image_{record['view']}.jpg")
        tiles = [original] + [renders[p][row]["rgb"] for p in presets]
        for column, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile), (column * size, 16 + row * size))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding the reference sets")
    parser.add_argument("--sets", nargs="+", default=["primitives", "textured"])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS),
                        help="the first one's background plates derive the original's masks (default order: exact first)")
    parser.add_argument("--out", type=Path, default=Path("runs/fidelity"))
    parser.add_argument("--threads", type=int, default=None, help="Cycles CPU threads (default: all cores)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(),
                        help="raster processes rendering at once for the whole machine's images/s (default: one per core)")
    parser.add_argument("--rounds", type=int, default=10, help="times each of those processes renders the set")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")
    report: dict = {"sets": {}}
    for name in args.sets:
        root = args.data / name
        renders, results = {}, {}
        plates = None
        for preset in args.presets:  # exact first when asked: its plates serve to derive the original's masks
            records, timing = render_set(root, preset, args.threads)
            if PRESETS[preset][0] == "raster":
                timing["machine_images_per_s"] = machine_images_per_s(root, preset, args.processes, args.rounds)
            else:  # Cycles renders on all cores (`--threads`) in one process
                timing["machine_images_per_s"] = timing["images_per_s"]
            plates = plates or [r["plate"] for r in records]
            rows = compare(records, plates, root)
            renders[preset] = records
            results[preset] = {**timing, "mean": summary(rows), "views": rows}
            print(f"\n{name} / {preset} ({timing['renderer']})")
            print(f"  {'object':32} view   ssim   mad R  mad G  mad B    iou  rule_iou    hue")
            for r in rows + [{"object": "mean", "view": "", **summary(rows)}]:
                mad = " ".join(f"{m:6.2f}" for m in r["mad"])
                print(f"  {r['object']:32} {r['view']!s:>4} {r['ssim']:6.4f} {mad} {r['iou']:6.3f} {r['rule_iou']:9.3f} {r['hue']:6.3f}")
            print(f"  {timing['images_per_s']:.3f} images/s, {timing['cpu_s_per_image']:.3f} CPU s/image; whole machine "
                  f"{timing['machine_images_per_s']:.3f} images/s")
        contact_sheet(root, renders, args.out / f"contact-{name}.png")
        for preset in [p for p in ("fast", "raster") if p in results and "exact" in results]:
            results[f"{preset}_vs_exact"] = {
                "ssim_drop": results["exact"]["mean"]["ssim"] - results[preset]["mean"]["ssim"],
                "speedup_wall": results[preset]["images_per_s"] / results["exact"]["images_per_s"],
                "speedup_cpu": results["exact"]["cpu_s_per_image"] / results[preset]["cpu_s_per_image"],
                "speedup_machine": results[preset]["machine_images_per_s"] / results["exact"]["machine_images_per_s"],
            }
            print(f"  {preset} vs exact: {json.dumps({k: round(v, 4) for k, v in results[f'{preset}_vs_exact'].items()})}")
        report["sets"][name] = results
    report["load_average_after"] = os.getloadavg()
    (args.out / "fidelity.json").write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {args.out / 'fidelity.json'} and contact sheets")


if __name__ == "__main__":
    main()
