"""Render benchmark (not a test): images/s of each backend and preset, and SSIM against a high-sample reference.

All backends render the same objects and the same views (3diebench factors, seed 0) in one run; the reference is
Blender Cycles with `--reference-samples` samples. Printed ratios: fast vs exact images/s (target >= 3x with
SSIM >= 0.95 against the reference), raster vs exact (target >= 20x), and raster with the objects' own appearance
(procedural colours per part) vs the same meshes with one uniform material (target >= 0.7x). Timings cover
set_asset + render of every view, after the backend is built (scene built once per worker in real runs).

    .venv/bin/python benchmarks/render.py [--objects 3] [--views 2] [--size 128] [--reference-samples 256] [--raster-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    window = np.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def _filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' convolution of a 2-d image with a 1-d window along both axes."""
    rows = np.apply_along_axis(lambda r: np.convolve(r, window, mode="valid"), 1, image)
    return np.apply_along_axis(lambda c: np.convolve(c, window, mode="valid"), 0, rows)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 gaussian window, sigma 1.5, K1 0.01, K2 0.03) of two uint8 RGB images' luminance."""
    weights = np.array([0.299, 0.587, 0.114])
    x, y = (np.asarray(im, dtype=np.float64) @ weights for im in (a, b))
    window = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    sxx = _filter(x * x, window) - mu_x**2
    syy = _filter(y * y, window) - mu_y**2
    sxy = _filter(x * y, window) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(score.mean())


def cached_rgb(path: Path, render: Callable[[], np.ndarray]) -> np.ndarray:
    """The uint8 images stored at `path` (an .npz with "rgb"), else `render()`'s, stored there first through a
    partial file renamed into place (a killed run leaves no cache file that looks complete)."""
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            return stored["rgb"]
    rgb = render()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez_compressed(partial, rgb=rgb)
    partial.replace(path)
    return rgb


def _load() -> str:
    """The 1/5/15-minute load averages (timings on a shared machine depend on them)."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def render_all(backend, assets, states) -> tuple[list[np.ndarray], float]:
    images = []
    start = time.perf_counter()
    for asset, views in zip(assets, states):
        backend.set_asset(asset)
        images.extend(backend.render(view).rgb for view in views)
    return images, time.perf_counter() - start


def raster_appearance_rates(backend, assets, uniform_assets, states, rounds: int = 4) -> dict[str, float]:
    """Images/s of the raster backend on the same meshes with their appearance ("source") and with one material
    ("uniform"), measured in alternating rounds (each kind first in half of them) so that load drifts cancel."""
    seconds = {"source": 0.0, "uniform": 0.0}
    try:
        render_all(backend, uniform_assets[:1], [states[0][:1]])  # warm-up
        for index in range(rounds):
            order = ("source", "uniform") if index % 2 else ("uniform", "source")
            for kind in order:
                seconds[kind] += render_all(backend, assets if kind == "source" else uniform_assets, states)[1]
    finally:
        backend.close()
    images = rounds * sum(len(views) for views in states)
    return {kind: images / value for kind, value in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reference-samples", type=int, default=256)
    parser.add_argument("--raster-only", action="store_true", help="Measure the raster backend only (no Blender).")
    args = parser.parse_args()

    from orbitset.datasets.procedural import ProceduralSource
    from orbitset.render import factors
    from orbitset.render.backends import get_backend
    from orbitset.render.dataset import select_objects
    from orbitset.render.recipes import get_recipe

    recipe = get_recipe("3diebench").with_overrides(size=args.size, views=args.views)
    scene = recipe.scene_spec()
    source = ProceduralSource(instances_per_class=1)
    refs = select_objects(source.objects(), args.objects)
    assets = [source.load(ref) for ref in refs]
    uniform_assets = [source.load(ref, appearance="uniform") for ref in refs]
    states = [factors.view_states(recipe, factors.sample_views(recipe, 0, ref.key), scene) for ref in refs]
    images_total = args.objects * args.views
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load average {_load()}; "
          f"{args.objects} objects x {args.views} views at {args.size} px (3diebench factors, seed 0)")

    runs: dict[str, tuple[list[np.ndarray], float]] = {}
    configs = [("raster", "fast")]
    appearance_rates = raster_appearance_rates(get_backend("raster", scene, "fast"), assets, uniform_assets, states)
    try:
        if args.raster_only:
            raise ImportError("--raster-only")
        from orbitset.render.backends import blender

        blender.PRESETS["reference"] = dataclasses.replace(blender.PRESETS["exact"], samples=args.reference_samples)
        configs += [("blender", "reference"), ("blender", "exact"), ("blender", "fast")]
        configs += [("blender", name) for name in blender.PRESETS if name not in ("reference", "exact", "fast")]
    except ImportError as exc:
        print(f"blender backend missing ({exc}); only raster is measured")
    for name, preset in configs:
        backend = get_backend(name, scene, preset)
        try:
            render_all(backend, assets[:1], [states[0][:1]])  # warm-up: shader compilation, kernel loading
            runs[f"{name}/{preset}"] = render_all(backend, assets, states)
        finally:
            backend.close()
        device = getattr(backend, "device", "OpenGL")
        print(f"  {name}/{preset} ({device}): {images_total / runs[f'{name}/{preset}'][1]:.3f} images/s", flush=True)

    reference = runs.get("blender/reference")
    rate = {label: images_total / seconds for label, (_, seconds) in runs.items()}
    print(f"\n{'backend/preset':<22}{'images/s':>10}{'SSIM vs ref':>13}")
    for label, (images, _) in runs.items():
        score = np.mean([ssim(a, b) for a, b in zip(images, reference[0])]) if reference else float("nan")
        print(f"{label:<22}{rate[label]:>10.3f}{score:>13.3f}")
    print(f"\nraster with appearance {appearance_rates['source']:.3f} images/s, uniform {appearance_rates['uniform']:.3f} "
          f"images/s: {appearance_rates['source'] / appearance_rates['uniform']:.2f}x (target >= 0.7x)")
    if "blender/exact" in runs:
        fast_ssim = np.mean([ssim(a, b) for a, b in zip(runs["blender/fast"][0], reference[0])])
        print(f"\nfast vs exact: {rate['blender/fast'] / rate['blender/exact']:.1f}x images/s (target >= 3x), "
              f"fast SSIM {fast_ssim:.3f} (target >= 0.95)")
        print(f"raster vs exact: {rate['raster/fast'] / rate['blender/exact']:.1f}x images/s (target >= 20x)")
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
