"""CLI commands of orbitset.render (registered on the main app by orbitset.cli); heavy imports stay inside commands."""

from __future__ import annotations

import click


@click.command(name="render")
@click.option("--recipe", default="3diebench", show_default=True,
              help="Shipped recipe (3diebench, 3diebench-t, 3diebench-ood, so3) or a recipe YAML file.")
@click.option("--assets", default="procedural", show_default=True,
              help="Mesh source: procedural[:N] (12 built-in classes, N objects each, 100 by default), shapenet:PATH, "
                   "modelnet:PATH, objaverse:PATH or folder:PATH.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for shards + manifest.json; rerun the same command to resume.")
@click.option("--backend", default="raster", show_default=True, help="Renderer: raster (pyrender) or blender (bpy), or package.module:Class.")
@click.option("--preset", default="fast", show_default=True,
              help="Quality preset: exact (3DIEBench's Cycles sampling) or fast; blender also has workbench. raster ignores it.")
@click.option("--objects", type=click.IntRange(min=1), default=None, help="Render only the first N objects (round-robin over classes). Default: all.")
@click.option("--views", type=click.IntRange(1, 1000), default=None, help="Views per object. Default: the recipe's (50 for 3diebench).")
@click.option("--size", type=click.IntRange(8, 8192), default=None, help="Image side in pixels. Default: the recipe's (256).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Dataset seed; view factors are drawn from (seed, object, view).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Parallel render workers (processes, or Ray tasks in flight).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local worker processes or Ray tasks.")
@click.option("--address", default=None,
              help="Ray cluster head HOST:PORT (with --executor ray). Default: the RAY_ADDRESS environment variable if set "
                   "(which joins that cluster), else a new local Ray instance.")
@click.option("--factors-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="Re-render exactly the views recorded in an orbitset dataset or an original 3DIEBench tree (latent_i.npy).")
@click.option("--layers", default=None, help="Comma-separated extra layers: depth,mask,points (or 'none'). Default: the recipe's.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2, show_default=True,
              help="Fraction of objects in the val split (by object, from the seed) unless the source or a split file decides.")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help='JSON {"train": [keys or source ids], "val": [...]}; objects it does not list are skipped.')
@click.option("--objects-per-shard", type=click.IntRange(min=1), default=64, show_default=True, help="Objects per shard (the shard size).")
@click.option("--max-faces", type=click.IntRange(min=1), default=2_000_000, show_default=True, help="Meshes with more faces are recorded as failures.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds one object may take before its worker is killed and the object recorded as failed.")
@click.option("--recycle-after", type=click.IntRange(min=1), default=200, show_default=True, help="Restart a worker after this many objects.")
@click.option("--memory-limit", type=click.FloatRange(min=1), default=8192, show_default=True, help="Restart a worker whose memory exceeds this many MiB.")
@click.option("--name", default=None, help="Dataset name in the manifest. Default: the recipe's name.")
@click.option("--appearance", type=click.Choice(["source", "uniform"]), default=None,
              help="source: each object's own materials, textures and colours (procedural: colours per part); "
                   "uniform: one grey material (shape-only studies). Default: the recipe's (source).")
@click.option("--up-axis", type=click.Choice(["y", "z"]), default=None,
              help="Up axis of every mesh file, turned to +Z before any rotation. Default: per format (OBJ, glTF: y; "
                   "OFF, PLY, STL: z).")
@click.option("--categories", type=click.Path(exists=True, dir_okay=False), default=None,
              help="objaverse: JSON or CSV mapping each object's uid to its category (like the LVIS annotations).")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def render(**options) -> None:
    """Render meshes under a recipe's transformations into sharded WebDataset tars + manifest.json.

    'orbitset render --out DIR' alone renders orbitset's default dataset: the procedural objects under the 3DIEBench
    recipe (see 'orbitset download --list').

    Each view's factors come from (seed, object, view), so the dataset is the same whatever the workers, executor
    or interruptions; failed objects are listed in the manifest with their reason.
    """
    from orbitset.errors import RenderError
    from orbitset.manifests.model import require_objects
    from orbitset.render.dataset import render_dataset
    from orbitset.render.executors import WorkerLimits

    layers = options["layers"]
    if layers is not None:
        layers = () if layers.strip().lower() == "none" else tuple(part.strip() for part in layers.split(",") if part.strip())
    manifest = render_dataset(
        options["recipe"], options["assets"], options["out"],
        backend=options["backend"], preset=options["preset"], objects=options["objects"], views=options["views"],
        size=options["size"], seed=options["seed"], workers=options["workers"], executor=options["executor"],
        address=options["address"], factors_from=options["factors_from"], val_fraction=options["val_fraction"],
        split_file=options["split_file"], layers=layers, progress=not options["no_progress"],
        objects_per_shard=options["objects_per_shard"], max_faces=options["max_faces"], name=options["name"],
        appearance=options["appearance"], up_axis=options["up_axis"], categories=options["categories"],
        limits=WorkerLimits(timeout=options["timeout"], recycle_after=options["recycle_after"], memory_limit_mb=options["memory_limit"]),
    )
    totals = manifest.totals()
    click.echo(
        f"wrote {totals['objects']} objects, {totals['views']} views in {totals['shards']} shards to {options['out']} "
        f"({len(manifest.failures)} failed)"
    )
    for failure in manifest.failures:
        click.echo(f"  failed {failure.object}: {failure.reason}")
    for line in summary_warnings(manifest.extra):
        click.echo(f"warning: {line}")
    require_objects(manifest, "rendered", RenderError)


def summary_warnings(extra: dict) -> list[str]:
    """Lines about what the run skipped or found suspicious (recorded in the manifest's ``extra``)."""
    lines = list(extra.get("source_warnings") or [])
    unsupported = extra.get("unsupported_files") or []
    if unsupported:
        shown = ", ".join(unsupported[:10]) + (", ..." if len(unsupported) > 10 else "")
        lines.append(f"skipped {len(unsupported)} files in formats orbitset does not read: {shown}")
    for class_name in extra.get("classes_without_objects") or []:
        lines.append(f"class {class_name!r}: every object failed; its index is unused")
    framing = extra.get("framing_warnings") or {}
    if framing:
        kinds = {"empty": "empty mask", "touches_border": "touching the border", "small": "under 0.5% of the image"}
        for key, counts in framing.items():
            listed = ", ".join(f"{count} {kinds.get(kind, kind)}" for kind, count in counts.items())
            lines.append(f"{key}: views badly framed ({listed})")
    return lines


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    app.add_command(render)
