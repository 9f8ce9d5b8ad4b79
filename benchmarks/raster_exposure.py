"""Raster light fit (not a test): the raster backend's light-term scales, fitted to Blender's renders of a calibration set.

The calibration set is procedural objects (`--objects` of them, one per class, `--views` views each, 3diebench factors
drawn with `--seed`, `--size` px), rendered with their own appearance by the blender backend (`--blender-preset`) and
by the raster backend. It shares nothing with the reference images `benchmarks/fidelity.py` judges raster on.

Free parameters: raster.py's LIGHT_SCALES: the scales of the light terms (spot, sun, world, floor bounce), by least
squares for each blur of a grid (the gaussian standing in for Cycles' pixel filter and denoiser), keeping the best. The raster backend
computes each light term separately (`RasterBackend.lighting`) and tone-maps their scaled sum (`compose`),
so the image for any scales is composed from one set of passes. Criterion: least squares on the display luminance
(0.299 R + 0.587 G + 0.114 B, grey levels) of every pixel, raster against Blender.

It prints the fitted scales, and the calibration-set mean SSIM (`benchmarks/render.py`'s), luminance RMS error and
mean absolute difference of raster against Blender with raster.py's current scales and with the fitted ones.
Blender's renders are kept in ``--out/blender-*.npz`` and reused by a later run with the same settings.

    PYTHONPATH=. .venv/bin/python benchmarks/raster_exposure.py [--objects 8] [--views 4] [--size 256] [--seed 0]
        [--blender-preset fast] [--out runs/raster-exposure]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import cached_rgb, ssim  # noqa: E402  (benchmarks/render.py: one SSIM for every benchmark)

BLURS = (0.0, 0.4, 0.55, 0.7, 0.85)  # gaussian sigmas tried, pixels


def render_views(backend, assets, states) -> list:
    """Every view of every asset, in order (`states`: one list of ViewStates per asset)."""
    views = []
    for asset, asset_states in zip(assets, states):
        backend.set_asset(asset)
        views.extend(backend.render(state) for state in asset_states)
    return views


def blender_renders(scene, assets, states, preset: str, cache: Path) -> np.ndarray:
    """Blender's RGB images (N, H, W, 3) uint8, from `cache` when it exists."""
    def render() -> np.ndarray:
        from orbitset.render.backends import get_backend

        backend = get_backend("blender", scene, preset)
        try:
            return np.stack([v.rgb for v in render_views(backend, assets, states)])
        finally:
            backend.close()

    return cached_rgb(cache, render)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=8, help="procedural objects, one per class")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blender-preset", default="fast")
    parser.add_argument("--out", type=Path, default=Path("runs/raster-exposure"))
    args = parser.parse_args()

    from scipy.optimize import least_squares

    from orbitset.datasets.mesh_sources import open_source
    from orbitset.render import factors
    from orbitset.render.backends import get_backend, raster
    from orbitset.render.backends.raster_shading import LIGHTS
    from orbitset.render.dataset import select_objects
    from orbitset.render.recipes import get_recipe

    recipe = get_recipe("3diebench").with_overrides(size=args.size, views=args.views)
    scene = recipe.scene_spec()
    source = open_source("procedural:1")
    refs = select_objects(source.objects(), args.objects)
    assets = [source.load(ref) for ref in refs]
    states = [factors.view_states(recipe, factors.sample_views(recipe, args.seed, ref.key), scene) for ref in refs]
    print(f"calibration set: {len(refs)} procedural objects ({', '.join(r.class_name for r in refs)}) x {args.views} "
          f"views, {args.size} px, seed {args.seed}; blender preset {args.blender_preset!r}")

    cache = args.out / f"blender-{args.blender_preset}-{args.objects}x{args.views}-{args.size}px-seed{args.seed}.npz"
    target_rgb = blender_renders(scene, assets, states, args.blender_preset, cache)
    target = luminance(target_rgb)

    backend = get_backend("raster", scene, "fast")
    try:
        passes = []
        for asset, asset_states in zip(assets, states):
            backend.set_asset(asset)
            passes.extend(backend.lighting(state)[0] for state in asset_states)

        def images(scales: np.ndarray, sigma: float) -> np.ndarray:
            named = {**dict(zip(LIGHTS, scales)), "blur": sigma}
            return np.stack([backend.compose(lighting, named) for lighting in passes])

        current = np.array([raster.LIGHT_SCALES[light] for light in LIGHTS])
        fits = []
        for sigma in BLURS:
            fit = least_squares(lambda x: (luminance(images(x, sigma)) - target)[:, ::2, ::2].ravel(), x0=current,
                                bounds=(0.0, np.inf), diff_step=1e-3)  # every other pixel: ample, 4x faster
            fits.append((fit.cost, sigma, fit.x))
            print(f"blur {sigma:.2f} px: cost {fit.cost:.4g} ({fit.nfev} evaluations)", flush=True)
        _, sigma, scales = min(fits, key=lambda f: f[0])
        print(f"\n{'scales':8} " + " ".join(f"{light:>7}" for light in LIGHTS) + f" {'blur':>5} {'mean SSIM':>10} {'lum. RMS':>9} {'MAD':>6}")
        for label, values, blur in (("current", current, raster.LIGHT_SCALES["blur"]), ("fitted", scales, sigma)):
            rgb = images(values, blur)
            score = np.mean([ssim(a, b) for a, b in zip(rgb, target_rgb)])
            rms = np.sqrt(np.mean((luminance(rgb) - target) ** 2))
            mad = np.abs(rgb.astype(np.float64) - target_rgb).mean()
            print(f"{label:8} " + " ".join(f"{v:7.3f}" for v in values) + f" {blur:5.2f} {score:10.4f} {rms:9.2f} {mad:6.2f}")
    finally:
        backend.close()
    print("\nfor raster.py: LIGHT_SCALES = {" + ", ".join(f'"{light}": {v:.3g}' for light, v in zip(LIGHTS, scales))
          + f', "blur": {sigma}' + "}")


if __name__ == "__main__":
    main()
