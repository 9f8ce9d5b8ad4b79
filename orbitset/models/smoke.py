"""`orbitset smoke`: show on a CPU, in under 30 minutes, that the reference models learn what they should.

Renders a small 3DIEBench-style dataset of procedural objects if absent (raster backend, grey objects at 64 px, the
camera closer than 3DIEBench's so that objects fill most of the frame: `smoke_recipe`), its objects split into train
(fitting), val (every choice: probe early stopping, and the plan's sizes were chosen on it) and test (the claims only:
instances that no choice saw). For each of `SmokePlan.seeds` it trains the small-CNN SIE and VICReg (at 32 px),
seq-JEPA on sequences of 4 views (the same trunk and size) and PointNet, VN-PointNet and the frame-averaged PointNet
under the "z" protocol (rotations about Z, orbitset's up axis), two jobs at a time, evaluates them on the test objects
and writes a markdown report (docs/results.md): every metric as mean and spread over the seeds, and the claims
(`orbitset.models.smoke_claims`), each holding only when it holds on the mean by more than the spread, and saying why
when it does not.

One file (its claims apart) because the plan, the jobs built from it and the report that describes it must agree."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from orbitset.errors import OrbitsetError
from orbitset.models.evaluate import EvalOptions, evaluate
from orbitset.models.report import ROTATION_ERROR_COLUMNS, markdown_report
from orbitset.models.smoke_claims import Claim, Results, check_claims, mean_spread
from orbitset.models.train import TrainConfig, train

if TYPE_CHECKING:
    from orbitset.render.recipes import Recipe

SPLITS = ("train", "val", "test")


@dataclass
class SmokePlan:
    """Sizes of the smoke run, chosen for time (three seeds of five models on a 2-core CPU) and on the validation
    objects; the test objects (`test_instances`) are instances that no choice of this plan or of an earlier one saw."""

    #: Training and validation objects: the first of the procedural source's round-robin order over classes.
    objects: int = 336
    #: Fraction of those objects in the val split (by a hash of the key; the rest trains).
    val_fraction: float = 0.18
    #: Instances [first, last) of every class that form the test split: far above the instances that the train and
    #: val objects, earlier smoke plans and the demo draw from (0, 1, ...), so no choice was made on them.
    test_instances: tuple[int, int] = (70, 76)
    seeds: tuple[int, ...] = (0, 1, 2)
    views: int = 12
    #: Side [px] of the rendered images (the raster backend does not antialias: 32 px renders lose detail).
    render_size: int = 64
    #: "uniform" (one grey material): shading alone shows the pose. With the procedural objects' own dark part
    #: colours the image models' rotation R^2 on the val objects stayed near the constant predictor's at this budget.
    appearance: str = "uniform"
    #: Side [px] the image models train on (the loader halves the renders in the JPEG decoder, which averages): a
    #: quarter of the pixels of 64 px, which buys the epochs that SIE's predictor needs before it learns anything.
    size: int = 32
    #: Camera distance [scene units] of the smoke recipe. 3DIEBench's 2.5 (with its 0.69 rad field of view) leaves the
    #: unit-sized objects about 20 of 64 px wide; 1.5 makes them fill most of the frame without clipping.
    camera_distance: float = 1.5
    render_workers: int = 2
    #: (model, seed) jobs run at once, each a process of one torch thread (1: in the calling process).
    jobs: int = 2
    #: Epochs of the image runs (each of `pairs_per_object` pairs per training object).
    image_epochs: int = 120
    image_batch: int = 64
    #: Method parameters of the image runs (SIE's per part, VICReg's whole). The projections stay narrower than the
    #: batch: with D > batch dimensions, unit variance per dimension forces large covariances (rank < batch).
    image_params: dict[str, Any] = field(default_factory=lambda: {"projector_dims": [256, 256, 16]})
    pairs_per_object: int = 4
    point_epochs: int = 6
    point_batch: int = 32
    num_points: int = 256
    point_params: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "pointnet": {"widths": [64, 128, 256], "head": [128]},
        "vn-pointnet": {"widths": [21, 21, 42, 85], "k": 10, "head": [128]},
        "fa-pointnet": {"widths": [64, 128, 256], "head": [128]},
    })
    #: Probes: the paper's protocol (fresh pairs every epoch, Adam 1e-3, batch 256) with early stopping on the val
    #: objects, at most `probe_epochs` epochs (the paper: 300; fewer for time).
    probe_epochs: int = 100
    #: Fresh views (classify) and pairs (rotation) per training object and probe epoch: with one of each, a probe
    #: of this dataset gets 2 steps an epoch and early stopping ends it before it has moved from its initialisation.
    probe_views: int = 12
    probe_pairs: int = 10
    probe_hidden: int = 1024
    probe_patience: int = 10
    test_pairs: int = 10
    #: SIE's equivariant part must beat its invariant part by this rotation R^2.
    margin_parts: float = 0.1
    #: seq-JEPA (small CNN at `size` px, batch `image_batch`): views per sequence K (the paper's 4), epochs of
    #: `sequences_per_object` sequences per training object, its linear warmup, and method parameters. A sequence
    #: costs about three pairs (four images, three with gradients, and the aggregator): 12 epochs keep its training
    #: below SIE's, for time.
    sequence_views: int = 4
    sequence_epochs: int = 12
    sequences_per_object: int = 4
    sequence_warmup_epochs: int = 2
    sequence_params: dict[str, Any] = field(default_factory=dict)


class StageTimer:
    """Wall-clock and CPU seconds (this process and its finished children) per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @staticmethod
    def _cpu() -> float:
        import resource

        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))

    def __call__(self, name: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start, self.cpu = time.perf_counter(), timer._cpu()
                print(f"[smoke] {name} ...", flush=True)

            def __exit__(self, *exc):
                timer.seconds[name] = time.perf_counter() - self.start
                timer.cpu_seconds[name] = timer._cpu() - self.cpu
                print(f"[smoke] {name}: {timer.seconds[name]:.0f} s (CPU {timer.cpu_seconds[name]:.0f} s)", flush=True)

        return _Stage()


def smoke_recipe(plan: SmokePlan) -> "Recipe":
    """3DIEBench's recipe (same factors and ranges) with the camera at `plan.camera_distance`, `plan.views` views of
    `plan.render_size` px and `plan.appearance`; named "3diebench-close"."""
    from orbitset.render.recipes import get_recipe

    base = get_recipe("3diebench").with_overrides(views=plan.views, size=plan.render_size, appearance=plan.appearance)
    camera = dataclasses.replace(base.scene.camera, distance=plan.camera_distance)
    return dataclasses.replace(base, name="3diebench-close", scene=dataclasses.replace(base.scene, camera=camera))


def split_objects(plan: SmokePlan) -> dict[str, list[str]]:
    """The smoke dataset's objects (keys of procedural assets) by split: the first `plan.objects` of the round-robin
    order split into train and val by a seeded hash of the key, and the test instances of every class."""
    from orbitset.render.dataset import open_assets, select_objects
    from orbitset.render.factors import stable_hash

    refs = open_assets("procedural").objects()
    first, last = plan.test_instances
    test = [ref for ref in refs if first <= int(ref.object_id) < last]
    fitting = select_objects([ref for ref in refs if int(ref.object_id) < first], plan.objects)
    if len(fitting) < plan.objects:
        raise OrbitsetError(f"the smoke plan asks for {plan.objects} train and val objects, but only {len(fitting)} "
                            f"procedural instances lie below its test instances (from {first}): lower `objects`")
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": [ref.key for ref in test]}
    for ref in fitting:
        u = stable_hash(f"smoke/val/{ref.key}") / 2**64
        splits["val" if u < plan.val_fraction else "train"].append(ref.key)
    return splits


def ensure_dataset(data: Path, plan: SmokePlan) -> bool:
    """Render the smoke dataset (`smoke_recipe`, `split_objects`) into `data` unless a manifest is already there.

    Returns whether an existing dataset was rendered with the plan's recipe (a different one is used as it is, with a
    warning: the report then describes a dataset the run did not use). A dataset without train, val and test splits
    is an error: the claims need objects that no choice saw."""
    recipe = smoke_recipe(plan)
    if (data / "manifest.json").is_file():
        from orbitset.manifests.model import load_manifest

        manifest = load_manifest(data)
        missing = sorted(set(SPLITS) - set(manifest.splits))
        if missing:
            raise OrbitsetError(f"{data} has no {', '.join(missing)} split (its splits: {sorted(manifest.splits)}); "
                                "the smoke run needs train, val and test objects: pass another --data or remove it")
        if manifest.recipe_hash == recipe.hash():
            return True
        print(f"[smoke] warning: {data} was rendered with recipe {manifest.recipe.get('name')!r} "
              f"(hash {manifest.recipe_hash[:12]}), not the smoke plan's {recipe.name!r} ({recipe.hash()[:12]})",
              flush=True)
        return False
    from orbitset.manifests.model import write_json_atomic
    from orbitset.render.dataset import render_dataset

    data.mkdir(parents=True, exist_ok=True)
    split_file = data.parent / f"{data.name}-splits.json"
    write_json_atomic(split_file, split_objects(plan))
    render_dataset(recipe, "procedural", data, backend="raster", workers=plan.render_workers, seed=0,
                   split_file=split_file)
    return True


def _epochs(count: int, scale: float) -> int:
    return max(1, round(count * scale))


#: Evaluations per smoke model: (result name, task, part).
EVALS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "sie": (("classify", "classify", "all"), ("rotation-inv", "rotation", "inv"),
            ("rotation-equi", "rotation", "equi"), ("retrieval", "retrieval", "all"),
            ("equivariance", "equivariance", "all")),
    "vicreg": (("classify", "classify", "all"), ("rotation", "rotation", "all"), ("retrieval", "retrieval", "all")),
    "seq-jepa": (("classify", "classify", "all"), ("aggregate", "aggregate", "all"), ("rotation", "rotation", "all"),
                 ("view-rotation", "view-rotation", "all")),
    **{m: (("pointcloud", "pointcloud", "all"), ("equivariance", "equivariance", "all"))
       for m in ("pointnet", "vn-pointnet", "fa-pointnet")},
}

#: Columns of the results table: (title, result name, metric key).
TABLE = (
    ("top-1", "classify", "top1"),
    ("top-1 (aggregate)", "aggregate", "top1"),
    ("rotation R^2 (all)", "rotation", "r2_global_mean"),
    ("rotation R^2 (all, per comp.)", "rotation", "r2_per_component"),
    ("rotation R^2 (inv)", "rotation-inv", "r2_global_mean"),
    ("rotation R^2 (inv, per comp.)", "rotation-inv", "r2_per_component"),
    ("rotation R^2 (equi)", "rotation-equi", "r2_global_mean"),
    ("rotation R^2 (equi, per comp.)", "rotation-equi", "r2_per_component"),
    ("R^2 of the mean", "rotation", "r2_mean_baseline"),
    ("single-view rotation R^2", "view-rotation", "r2_global_mean"),
    ("single-view rotation R^2 (per comp.)", "view-rotation", "r2_per_component"),
    *ROTATION_ERROR_COLUMNS,
    ("MRR", "retrieval", "mrr"),
    ("H@1", "retrieval", "h@1"),
    ("H@5", "retrieval", "h@5"),
    ("H@10", "retrieval", "h@10"),
    ("equivariance err. (SIE: W(q); VN: vector layers)", "equivariance", "equivariance_error"),
    ("err. W = I", "equivariance", "identity_error"),
    ("err. best beta w I", "equivariance", "scaled_identity_error"),
    ("invariance err.", "equivariance", "invariance_error"),
    ("z/z", "pointcloud", "z/z"),
    ("z/SO3", "pointcloud", "z/so3"),
    ("inv. err. (features)", "equivariance", "invariance_error_features"),
)


def results_table(results: Results) -> list[str]:
    """Markdown rows: one per model, every metric as mean ± spread over the seeds."""
    titles = [t for t, name, key in TABLE if any(key in results[m][0].get(name, {}) for m in results)]
    lines = ["| model | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for model, seeds in results.items():
        cells = []
        for title, name, key in TABLE:
            if title not in titles:
                continue
            if key not in seeds[0].get(name, {}):
                cells.append("")
                continue
            mean, spread = mean_spread([float(s[name][key]) for s in seeds])
            small = 0 < abs(mean) < 1e-3
            cells.append(f"{mean:.2e} ± {spread:.1e}" if small else f"{mean:.3f} ± {spread:.3f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def write_results(path: Path, runs: list[Path], results: Results, claims: list[Claim], timer: StageTimer,
                  plan: SmokePlan, data: Path, command: str, planned: bool, elapsed: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = markdown_report(runs, path.with_name(path.stem + "-runs.md"))
    splits = split_objects(plan)
    lines = [
        "# Results: the smoke run",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: "
        f"{platform.machine()} CPU, {os.cpu_count()} cores, "
        + (f"{plan.jobs} jobs at a time of one torch thread each" if plan.jobs > 1
           else f"{torch.get_num_threads()} torch threads") + ", no GPU "
        f"({'CUDA available' if torch.cuda.is_available() else 'CPU only'}); Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}.",
        "",
        f"Dataset: `{data}`: 3DIEBench recipe with the camera at distance {plan.camera_distance} (3DIEBench: 2.5; "
        f"objects fill most of the frame), procedural assets with appearance {plan.appearance!r}, raster backend, "
        f"{sum(map(len, splits.values()))} objects x "
        f"{plan.views} views at {plan.render_size} px (trained and evaluated at {plan.size} px), split by object: "
        f"{len(splits['train'])} train (fitting), "
        f"{len(splits['val'])} val (every choice: probe early stopping, and the plan's sizes, which were also set for "
        f"time) and {len(splits['test'])} test (the numbers below, nothing else): instances "
        f"{'-'.join(map(str, sorted({plan.test_instances[0], plan.test_instances[1] - 1})))} of every class, which no "
        f"earlier smoke plan or demo rendered, so no choice saw them"
        f"{'' if planned else ' (**not** the dataset used: it was rendered with another recipe)'}. "
        f"Seeds {', '.join(map(str, plan.seeds))} per model; every number is mean ± spread (sample standard "
        f"deviation) over the seeds, and a claim holds only when it holds on the means by more than the spreads.",
        "",
        f"Image models: small CNN (128-d representation; SIE: 64-d invariant and 64-d equivariant parts), "
        f"{plan.image_epochs} epochs of {plan.pairs_per_object} pairs per training object, batch {plan.image_batch}, "
        f"the SIE repository's loss weights and hypernetwork, the raw relative quaternion, method parameters "
        f"{plan.image_params}, batch-norm statistics recomputed with the final weights. Probes (the paper's "
        f"protocol, early-stopped on the val objects): Adam lr 1e-3, batch 256, at most {plan.probe_epochs} epochs "
        f"with {plan.probe_views} fresh random views (classify, linear) or "
        f"{plan.probe_pairs} pairs (rotation, MLP 2D -> {plan.probe_hidden} -> {plan.probe_hidden} -> 4 on the "
        f"concatenated pair) per object every epoch (the paper: one; this dataset is 150x smaller), "
        f"patience {plan.probe_patience}; scored on every test view (top-1) or {plan.test_pairs} pairs per test object "
        f"(R^2 in both conventions: one global mean, SIE's, and the average of per-component R^2, seq-JEPA's, "
        f"marked 'per comp.'). seq-JEPA: the same small CNN and batch, sequences of {plan.sequence_views} views "
        f"({plan.sequence_views - 1} context views with their actions, the raw relative quaternions, and the target), "
        f"{plan.sequence_epochs} epochs of {plan.sequences_per_object} sequences per training object, AdamW lr 4e-4 "
        f"after {plan.sequence_warmup_epochs} warmup epochs, the authors' aggregator, predictor and EMA "
        f"(method parameters {plan.sequence_params or 'as published'}); its aggregate top-1 probes "
        f"{plan.sequence_views - 1}-view sequences. Equivariance errors ||P(e_a) - e_b|| / ||e_b|| on test pairs for SIE's "
        f"predictor P = W(q), for P = I and for the least-squares best P = beta w I (w: the quaternion's real part). "
        f"Point clouds: {plan.num_points} points, trained with random rotations about Z (up) for {plan.point_epochs} "
        f"epochs, tested about Z (z/z) and in SO(3) (z/SO3).",
        "",
        "## Claims",
        "",
        "| claim | holds | numbers (test objects) | why not |",
        "|---|---|---|---|",
        *[f"| {c.text} | {'yes' if c.holds else '**no**'} | {c.evidence} | {c.why} |" for c in claims],
        "",
        "## All results (test objects, mean ± spread over seeds)",
        "",
        *results_table(results),
        "",
        f"Per-run numbers: [{path.stem}-runs.md]({path.stem}-runs.md).",
        "",
        *[line for line in figures.splitlines() if line.startswith("![")],
        "",
        "## Time per stage",
        "",
        "| stage | wall seconds | CPU seconds |",
        "|---|---|---|",
        *[f"| {name} | {seconds:.0f} | {timer.cpu_seconds[name]:.0f} |" for name, seconds in timer.seconds.items()],
        f"| whole run (jobs overlap: wall is elapsed time, not the sum) | {elapsed:.0f} | "
        f"{sum(timer.cpu_seconds.values()):.0f} |",
        "",
    ]
    path.write_text("\n".join(lines))
    (runs[0].parent / "smoke.json").write_text(json.dumps(
        {"claims": [asdict(c) for c in claims], "results": results,
         "seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds, "elapsed_seconds": elapsed,
         "plan": asdict(plan)}, indent=2, default=str))


def _run_job(model: str, seed: int, data: Path, out: Path, plan: SmokePlan, scale: float,
             threads: int | None) -> tuple[dict[str, dict[str, Any]], dict[str, float], dict[str, float]]:
    """Train (or resume) and evaluate one model for one seed: (results by name, wall seconds, CPU seconds by stage)."""
    if threads:
        torch.set_num_threads(threads)
    timer = StageTimer()
    run = out / f"{model}-seed{seed}"
    if model in plan.point_params:
        cfg = TrainConfig(method=model, data=str(data), out=str(run), rotation="z",
                          epochs=_epochs(plan.point_epochs, scale), batch_size=plan.point_batch,
                          num_points=plan.num_points, params=plan.point_params[model], seed=seed)
    elif model == "seq-jepa":
        cfg = TrainConfig(method=model, data=str(data), out=str(run), backbone="small", size=plan.size,
                          epochs=_epochs(plan.sequence_epochs, scale), batch_size=plan.image_batch,
                          views=plan.sequence_views, pairs_per_object=plan.sequences_per_object,
                          warmup_epochs=plan.sequence_warmup_epochs, params=dict(plan.sequence_params), seed=seed)
    else:
        cfg = TrainConfig(method=model, data=str(data), out=str(run), backbone="small", size=plan.size,
                          epochs=_epochs(plan.image_epochs, scale), batch_size=plan.image_batch,
                          pairs_per_object=plan.pairs_per_object, params=dict(plan.image_params), seed=seed)
    with timer(f"train {run.name}"):
        train(cfg, resume=True, progress=False)  # a finished run is kept: an interrupted smoke resumes
    tasks = list(EVALS[model])
    if seed == plan.seeds[0] and model in ("pointnet", "vn-pointnet"):
        tasks.append(("orbit-plot", "orbit-plot", "all"))
    opts = EvalOptions(split="test", stop_split="val", probe_epochs=plan.probe_epochs, views=plan.probe_views,
                       pairs_per_object=plan.probe_pairs, probe_hidden=plan.probe_hidden,
                       patience=plan.probe_patience, test_pairs=plan.test_pairs, seed=seed)
    with timer(f"evaluate {run.name}"):
        results = {name: evaluate(task, run, dataclasses.replace(opts, part=part)) for name, task, part in tasks}
    print(f"[smoke] {run.name}: " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v:.3g}" for k, v in r.items() if isinstance(v, float))
        for name, r in results.items()), flush=True)
    return results, timer.seconds, timer.cpu_seconds


def run_smoke(out: str | Path, data: str | Path | None = None, results: str | Path = "docs/results.md",
              scale: float = 1.0, plan: SmokePlan | None = None) -> bool:
    """Run the whole smoke pipeline; returns whether every claim holds (the report is written either way).

    The (model, seed) jobs run `plan.jobs` at a time in separate processes of one torch thread each (the image
    models first, the longest); with one job they run in this process with torch's own thread count."""
    plan = plan or SmokePlan()
    out = Path(out)
    data = Path(data) if data else out / "data"
    began = time.perf_counter()
    timer = StageTimer()
    with timer("render dataset"):
        planned = ensure_dataset(data, plan)
    jobs = [(model, seed) for model in EVALS for seed in plan.seeds]  # image models first: the longest jobs
    if plan.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # forking a process that ran torch can hang its thread pools
        with ProcessPoolExecutor(plan.jobs, mp_context=context) as pool:
            futures = {job: pool.submit(_run_job, *job, data, out, plan, scale, 1) for job in jobs}
            outcomes = {job: future.result() for job, future in futures.items()}
    else:
        outcomes = {job: _run_job(*job, data, out, plan, scale, None) for job in jobs}
    for _, seconds, cpu_seconds in outcomes.values():
        timer.seconds.update(seconds)
        timer.cpu_seconds.update(cpu_seconds)
    collected: Results = {model: [outcomes[model, seed][0] for seed in plan.seeds] for model in EVALS}
    runs = [out / f"{model}-seed{seed}" for seed in plan.seeds for model in EVALS]
    claims = check_claims(collected, plan.margin_parts)
    command = (f"orbitset smoke --out {out}" + (f" --data {data}" if data != out / "data" else "")
               + (f" --scale {scale}" if scale != 1.0 else "")
               + (f" --jobs {plan.jobs}" if plan.jobs != SmokePlan.jobs else ""))
    elapsed = time.perf_counter() - began
    write_results(Path(results), runs, collected, claims, timer, plan, data, command, planned, elapsed)
    for c in claims:
        print(f"[smoke] {'PASS' if c.holds else 'FAIL'}: {c.text}: {c.evidence}" + (f" ({c.why})" if c.why else ""))
    print(f"[smoke] report: {results}; {elapsed:.0f} s")
    return all(c.holds for c in claims)
