"""CLI commands of orbitset.models (registered on the main app by orbitset.cli); heavy imports stay inside commands.

`orbitset train`, `orbitset eval`, `orbitset report`, `orbitset smoke`.
"""

from __future__ import annotations

import click

TRAINABLE = ("sie", "sie-color", "vicreg", "simclr", "equimod", "sen", "augself", "seq-jepa", "pointnet", "vn-pointnet",
             "fa-pointnet")
EVAL_TASKS = ("classify", "rotation", "color", "retrieval", "pre", "pointcloud", "equivariance", "orbit-plot",
              "aggregate", "view-rotation")
PROTOCOLS = ("3diebench-paper", "seq-jepa-paper")


def _parse_params(values: tuple[str, ...]) -> dict:
    import yaml

    from orbitset.errors import OrbitsetError

    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OrbitsetError(f"--param expects KEY=VALUE, got {item!r} (e.g. --param inv_coeff=10)")
        params[key.strip()] = yaml.safe_load(value)
    return params


def _given(ctx: click.Context) -> set[str]:
    """Names of the options the user set on the command line (not defaults)."""
    from click.core import ParameterSource

    return {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""

    @app.command()
    @click.argument("method", type=click.Choice(TRAINABLE))
    @click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset directory (manifest.json).")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
    @click.option("--epochs", type=int,
                  help="Epochs (default: 2000 images, 1000 seq-jepa, 250 point clouds; 0 saves the initial model).")
    @click.option("--batch-size", type=int, help="Batch size (default: 1024 images, 512 seq-jepa, 32 point clouds).")
    @click.option("--lr", type=float, help="Learning rate (default 1e-3; seq-jepa 4e-4, AdamW).")
    @click.option("--weight-decay", type=float, help="Weight decay (default 1e-6 images, 0 seq-jepa, 1e-4 point clouds).")
    @click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 ...")
    @click.option("--size", type=int, help="Image size in pixels (default 256; seq-jepa 128).")
    @click.option("--backbone", type=click.Choice(["resnet18", "small"]), default="resnet18", show_default=True)
    @click.option("--condition", type=click.Choice(["rotation", "rotation+color"]), help="Pair condition (default per method).")
    @click.option("--pairs-per-object", type=int, default=1, show_default=True,
                  help="Pairs (seq-jepa: sequences) drawn per object and epoch.")
    @click.option("--views", type=int, default=4, show_default=True,
                  help="seq-jepa: views per sequence K (K - 1 context views and the target).")
    @click.option("--warmup-epochs", type=int, help="Linear learning-rate warmup from 1e-5 (default: 20 seq-jepa, 0 else).")
    @click.option("--rotation", type=click.Choice(["z", "so3"]), default="z", show_default=True,
                  help="Point clouds: training rotations about Z (up, orbitset's world frame) or uniform in SO(3).")
    @click.option("--num-points", type=int, help="Point clouds: points per cloud (default 1024).")
    @click.option("--num-workers", type=int, default=0, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                  help="Method hyper-parameter, e.g. --param equi_coeff=4.5 (see orbitset.models.methods).")
    @click.option("--no-online-probes", is_flag=True, help="Do not train the online probes.")
    @click.option("--resume", is_flag=True, help="Continue from RUN/checkpoint.pt.")
    @click.option("--quaternion", type=click.Choice(["raw", "canonical"]), default="raw", show_default=True,
                  help="Condition quaternion: raw as 3DIEBench composes it (SIE's) or sign-canonical (w >= 0).")
    @click.option("--protocol", type=click.Choice(PROTOCOLS),
                  help="A published configuration in one flag: 3diebench-paper (SIE's: ResNet-18, 256 px, batch 1024, "
                       "2000 epochs, ...) or seq-jepa-paper (ResNet-18, 128 px, 4 views, batch 512, 1000 epochs, ...).")
    @click.pass_context
    def train(ctx, method, data, out, epochs, batch_size, lr, weight_decay, device, size, backbone, condition,
              pairs_per_object, views, warmup_epochs, rotation, num_points, num_workers, seed, params, no_online_probes,
              resume, quaternion, protocol):
        """Train a reference model (checkpoint every epoch, metrics in RUN/metrics.jsonl)."""
        from orbitset.errors import UsageError
        from orbitset.models.protocols import apply_protocol
        from orbitset.models.train import TrainConfig, train as run_training

        if protocol == "seq-jepa-paper" and method != "seq-jepa":
            raise UsageError(f"--protocol seq-jepa-paper configures seq-jepa, not {method}; use 3diebench-paper")
        values = apply_protocol(protocol, "train", dict(
            epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, size=size, backbone=backbone,
            pairs_per_object=pairs_per_object, quaternion=quaternion, views=views, warmup_epochs=warmup_epochs),
            _given(ctx))
        cfg = TrainConfig(method=method, data=data, out=out, device=device, condition=condition,
                          params=_parse_params(params), seed=seed, num_workers=num_workers, rotation=rotation,
                          num_points=num_points, online_probes=not no_online_probes, **values)
        history = run_training(cfg, resume=resume)
        if history:
            last = history[-1]
            click.echo(f"{method}: epoch {last['epoch']} loss {last['loss']:.4f} -> {out}")

    @app.command(name="eval")
    @click.argument("task", type=click.Choice(EVAL_TASKS))
    @click.option("--run", "run", required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--data", type=click.Path(exists=True, file_okay=False), help="Dataset (default: the run's).")
    @click.option("--split", default="val", show_default=True)
    @click.option("--device", default="cpu", show_default=True)
    @click.option("--part", type=click.Choice(["inv", "equi", "all"]), default="all", show_default=True,
                  help="Representation part the probe reads (classify, rotation, color).")
    @click.option("--batch-size", type=int, default=256, show_default=True)
    @click.option("--probe-epochs", type=int, default=300, show_default=True)
    @click.option("--probe-lr", type=float, default=1e-3, show_default=True)
    @click.option("--probe-weight-decay", type=float, default=0.0, show_default=True)
    @click.option("--probe-hidden", type=int, default=1024, show_default=True)
    @click.option("--pair-sampling", type=click.Choice(["fresh", "fixed"]), default="fresh", show_default=True,
                  help="fresh: a new random pair (view) per object every probe epoch (the paper's); fixed: drawn once.")
    @click.option("--views", type=int, default=1, show_default=True, help="classify: views per object (per epoch).")
    @click.option("--pairs-per-object", type=int, default=1, show_default=True,
                  help="rotation/color: pairs per object (per epoch when fresh).")
    @click.option("--test-pairs", type=int, default=10, show_default=True, help="Scored pairs per evaluated object.")
    @click.option("--stop-split", help="Early stopping on this split's objects (e.g. val when evaluating test).")
    @click.option("--holdout-fraction", type=float, default=0.0, show_default=True,
                  help="Early stopping on this fraction of the training objects (when no --stop-split).")
    @click.option("--patience", type=int, default=10, show_default=True)
    @click.option("--num-workers", type=int, default=0, show_default=True)
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--protocol", type=click.Choice(PROTOCOLS), help="The published evaluation budget.")
    @click.pass_context
    def eval_command(ctx, task, run, data, split, device, part, batch_size, probe_epochs, probe_lr, probe_weight_decay,
                     probe_hidden, pair_sampling, views, pairs_per_object, test_pairs, stop_split, holdout_fraction,
                     patience, num_workers, seed, protocol):
        """Evaluate a run; writes RUN/eval/TASK.json and prints a short table."""
        from orbitset.models.evaluate import EvalOptions, evaluate, format_table
        from orbitset.models.protocols import apply_protocol

        values = apply_protocol(protocol, "eval", dict(
            batch_size=batch_size, probe_epochs=probe_epochs, probe_lr=probe_lr, probe_weight_decay=probe_weight_decay,
            probe_hidden=probe_hidden, pair_sampling=pair_sampling, stop_split=stop_split,
            holdout_fraction=holdout_fraction), _given(ctx))
        opts = EvalOptions(data=data, split=split, device=device, part=part, views=views,
                           pairs_per_object=pairs_per_object, test_pairs=test_pairs, patience=patience, seed=seed,
                           num_workers=num_workers, progress=True, **values)
        click.echo(format_table(evaluate(task, run, opts)))

    @app.command()
    @click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
    @click.option("--out", type=click.Path(dir_okay=False), help="Write the markdown (and a bar chart) here.")
    def report(runs, out):
        """One markdown table of the evaluation results of RUNS."""
        from orbitset.models.report import markdown_report

        click.echo(markdown_report(list(runs), out))

    @app.command()
    @click.option("--out", default="runs/smoke", show_default=True, type=click.Path(file_okay=False))
    @click.option("--data", type=click.Path(file_okay=False), help="Dataset (default: OUT/data, rendered if absent).")
    @click.option("--results", default="docs/results.md", show_default=True, type=click.Path(dir_okay=False))
    @click.option("--scale", type=float, default=1.0, show_default=True, help="Multiply every epoch count (quick checks).")
    @click.option("--jobs", type=click.IntRange(min=1), default=None,
                  help="Trainings run at once, one process and one torch thread each (1: in this process); "
                       "default: the smoke plan's (2).")
    def smoke(out, data, results, scale, jobs):
        """Render a small dataset (train/val/test objects), train small SIE, VICReg and point-cloud models on CPU
        with three seeds, evaluate on the test objects, write the claims with mean and spread."""
        from orbitset.models.smoke import SmokePlan, run_smoke

        plan = SmokePlan() if jobs is None else SmokePlan(jobs=jobs)
        if not run_smoke(out, data=data, results=results, scale=scale, plan=plan):
            raise click.exceptions.Exit(1)
