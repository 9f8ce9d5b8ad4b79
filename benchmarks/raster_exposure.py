"""Raster exposure fit (not a test): the raster backend's light scales, fitted to Blender's renders of a calibration set.

The calibration set is procedural objects (`--objects` of them, one per class, `--views` views each, 3diebench factors
drawn with `--seed`, `--size` px), rendered with their own appearance by the blender backend (`--blender-preset`) and
by the raster backend. It shares nothing with the reference images `benchmarks/fidelity.py` judges raster on.

Free parameters: three multipliers (ambient, sun, spot) of raster.py's AMBIENT, SUN_INTENSITY_PER_UNIT and
SPOT_INTENSITY_PER_WATT. pyrender shades in linear light, sums the lights and writes ``clip(linear) ** (1 / 2.2)``,
so the raster image for any multipliers is composed from three renders, one per light alone. Criterion: least squares
on the display-encoded luminance (0.299 R + 0.587 G + 0.114 B, grey levels) of every pixel where raster hits the
object or the floor, raster against Blender. Per pixel rather than per region: the rasteriser's spot pool has a
harder edge than Cycles', and matching only its mean brightness over-exposes it.

It prints the fitted constants, the calibration-set mean SSIM (`benchmarks/render.py`'s) and luminance RMS error of
raster against Blender with raster.py's current constants and with the fitted ones (both real renders, not composed).
Blender's renders are kept in ``--out/blender-*.npz`` and reused by a later run with the same settings.

    PYTHONPATH=. .venv/bin/python benchmarks/raster_exposure.py [--objects 6] [--views 4] [--size 128] [--seed 0]
        [--blender-preset fast] [--out runs/raster-exposure]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import ssim  # noqa: E402  (benchmarks/render.py: one SSIM for every benchmark)

LIGHTS = ("ambient", "sun", "spot")
CONSTANTS = {"ambient": "AMBIENT", "sun": "SUN_INTENSITY_PER_UNIT", "spot": "SPOT_INTENSITY_PER_WATT"}
DISPLAY_GAMMA = 2.2  # pyrender's output encoding: display = clip(linear) ** (1 / 2.2)


@contextlib.contextmanager
def light_scales(**scales: float):
    """raster.py's light constants multiplied by `scales` (ambient, sun, spot) while backends are built."""
    from orbitset.render.backends import raster

    saved = {light: getattr(raster, CONSTANTS[light]) for light in LIGHTS}
    try:
        for light, scale in scales.items():
            setattr(raster, CONSTANTS[light], saved[light] * scale)
        yield
    finally:
        for light, value in saved.items():
            setattr(raster, CONSTANTS[light], value)


def render_views(backend, assets, states, depth: bool = False) -> list:
    """Every view of every asset, in order (`states`: one list of ViewStates per asset)."""
    views = []
    for asset, asset_states in zip(assets, states):
        backend.set_asset(asset)
        views.extend(backend.render(state, depth=depth) for state in asset_states)
    return views


def render_raster(scene, assets, states, depth: bool = False, **scales: float) -> list:
    """`render_views` on a raster backend built with the light constants multiplied by `scales`."""
    from orbitset.render.backends import get_backend

    with light_scales(**scales):
        backend = get_backend("raster", scene, "fast")
    try:
        return render_views(backend, assets, states, depth=depth)
    finally:
        backend.close()


def blender_renders(scene, assets, states, preset: str, cache: Path) -> np.ndarray:
    """Blender's RGB images (N, H, W, 3) uint8, from `cache` when it exists."""
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            return stored["rgb"]
    from orbitset.render.backends import get_backend

    backend = get_backend("blender", scene, preset)
    try:
        views = render_views(backend, assets, states)
    finally:
        backend.close()
    rgb = np.stack([v.rgb for v in views])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, rgb=rgb)
    return rgb


def to_linear(rgb: np.ndarray) -> np.ndarray:
    """pyrender's uint8 output -> the linear light it was encoded from (0-1)."""
    return (np.asarray(rgb, dtype=np.float64) / 255.0) ** DISPLAY_GAMMA


def to_display(linear: np.ndarray) -> np.ndarray:
    """Display values in grey levels (float, unquantised)."""
    return 255.0 * np.clip(linear, 0.0, 1.0) ** (1.0 / DISPLAY_GAMMA)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def compose(bases: np.ndarray, hit: np.ndarray, unlit: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Display images (N, H, W, 3) for light multipliers `scales`, from linear bases (3, N, H, W, 3)."""
    linear = np.tensordot(scales, bases, axes=1)
    return np.where(hit[..., None], to_display(linear), unlit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=6, help="procedural objects, one per class")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blender-preset", default="fast")
    parser.add_argument("--out", type=Path, default=Path("runs/raster-exposure"))
    args = parser.parse_args()

    from scipy.optimize import least_squares

    from orbitset.datasets.mesh_sources import open_source
    from orbitset.render import factors
    from orbitset.render.backends import raster
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

    current = render_raster(scene, assets, states, depth=True)
    hit = np.stack([v.depth > 0 for v in current])
    current_rgb = np.stack([v.rgb for v in current]).astype(np.float64)
    bases = np.stack([
        to_linear(np.stack([v.rgb for v in render_raster(scene, assets, states, **{o: float(o == light) for o in LIGHTS})]))
        for light in LIGHTS
    ])
    target = luminance(target_rgb)

    def residuals(scales: np.ndarray) -> np.ndarray:
        return (luminance(compose(bases, hit, current_rgb, scales)) - target)[hit]

    fit = least_squares(residuals, x0=np.ones(3), bounds=(0.0, np.inf))
    current_constants = {light: getattr(raster, CONSTANTS[light]) for light in LIGHTS}
    fitted = {light: float(f"{current_constants[light] * scale:.3g}") for light, scale in zip(LIGHTS, fit.x)}
    composed_error = np.abs(compose(bases, hit, current_rgb, np.ones(3)) - current_rgb).max()
    print(f"composition check: one-light renders summed vs the all-light render, max |difference| "
          f"{composed_error:.1f} grey levels")
    print(f"least squares: {fit.message} ({fit.nfev} evaluations); multipliers "
          + ", ".join(f"{light} {scale:.3f}" for light, scale in zip(LIGHTS, fit.x)))

    after = render_raster(scene, assets, states, **{light: fitted[light] / current_constants[light] for light in LIGHTS})
    print(f"\n{'constants':10} {'AMBIENT':>8} {'SUN/unit':>9} {'SPOT/W':>8} {'mean SSIM':>10} {'lum. RMS':>9}")
    for label, views, constants in (
        ("current", current, current_constants),
        ("fitted", after, fitted),
    ):
        rgb = np.stack([v.rgb for v in views])
        score = np.mean([ssim(a, b) for a, b in zip(rgb, target_rgb)])
        rms = np.sqrt(np.mean(((luminance(rgb) - target)[hit]) ** 2))
        print(f"{label:10} {constants['ambient']:8.4f} {constants['sun']:9.4f} {constants['spot']:8.4f} {score:10.4f} "
              f"{rms:9.2f}")
    print("\nfor raster.py: " + ", ".join(f"{CONSTANTS[light]} = {fitted[light]}" for light in LIGHTS))


if __name__ == "__main__":
    main()
