"""CLI commands of orbitset.datasets: convert a published layout to shards, export shards to it (registered by
orbitset.cli).

Heavy imports stay inside the command bodies. Library errors propagate to `orbitset.cli.main`, which prints them as
one line and exits with status 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from orbitset.datasets.convert import ConvertReport

_LAYOUTS = click.Choice(["3diebench", "3diebench-t", "3diebench-ood"])


@click.command()
@click.argument("layout", type=_LAYOUTS)
@click.argument("src")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--splits-from", default=None,
              help="Folder or URL folder with train_images.npy, val_images.npy and *_labels.npy (default: SRC if it has them).")
@click.option("--views", type=click.IntRange(1), default=50, show_default=True, help="Views per object.")
@click.option("--objects-per-shard", type=click.IntRange(1), default=256, show_default=True)
@click.option("--fix-colors", is_flag=True, help="Re-encode images with red and blue in RGB order.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=8, show_default=True, help="Threads reading a tree's files ahead.")
def convert(layout: str, src: str, out: str, splits_from: str | None, views: int, objects_per_shard: int,
            fix_colors: bool, jobs: int) -> None:
    """Convert SRC in LAYOUT (SYNSET/OBJ/image_i.jpg + latent_i.npy) into orbitset shards in OUT, as a stream.

    SRC: a local .tar.gz/.tar archive, an archive URL, a local tree, or an fsspec URL of a tree (file://, memory://,
    hf://datasets/..., s3://...); the layout's root may sit at any depth. Interrupted runs resume (see 'orbitset
    download --help')."""
    from orbitset.datasets.convert import ConvertSettings, convert_source, read_split_dir

    files = read_split_dir(splits_from) if splits_from is not None else None
    settings = ConvertSettings(layout=layout, views=views, objects_per_shard=objects_per_shard, fix_colors=fix_colors)
    report = convert_source(src, out, settings, split_files=files, jobs=jobs)
    echo_conversion(report)


def echo_conversion(report: "ConvertReport") -> None:
    """Print what a conversion did and its failures grouped by reason; AssetError (exit status 2) when it converted
    no object, saying ``--views N`` when every object of the source has N views (another count than asked)."""
    from orbitset.datasets.sie_layout import views_found
    from orbitset.errors import AssetError
    from orbitset.manifests.model import failure_lines, require_objects

    click.echo(report.summary())
    for line in failure_lines(report.manifest.failures):
        click.echo(f"  failed: {line}")
    found = views_found([failure.reason for failure in report.manifest.failures])
    hint = f"every object has {found} views: run the same command again with --views {found} and an empty --out" if found else ""
    require_objects(report.manifest, "converted", AssetError, hint)


@click.group()
def export() -> None:
    """Write an orbitset dataset in another layout."""


@export.command("sie-layout")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Root of the SYNSET/OBJ/ tree.")
def export_sie_layout_command(dataset: str, out: str) -> None:
    """Write DATASET as 3DIEBench's tree (SYNSET/OBJ/image_i.jpg + latent_i.npy) plus split and label .npy files."""
    from orbitset.datasets.export import export_sie_layout

    report = export_sie_layout(dataset, out)
    click.echo(report.summary())


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (convert, export):
        app.add_command(command)
