"""CLI commands of orbitset.datasets: convert a published layout to shards, export shards to it (registered by
orbitset.cli).

Heavy imports stay inside the command bodies. Library errors propagate to `orbitset.cli.main`, which prints them as
one line and exits with status 2.
"""

from __future__ import annotations

import click


@click.command()
@click.argument("layout", type=click.Choice(["3diebench", "3diebench-t", "3diebench-ood"]))
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--splits-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with train_images.npy, val_images.npy and *_labels.npy (default: SRC if it has them).")
@click.option("--views", type=click.IntRange(1), default=50, show_default=True, help="Views per object.")
@click.option("--workers", "-w", type=click.IntRange(1), default=None, help="Processes (default: up to 4).")
@click.option("--objects-per-shard", type=click.IntRange(1), default=256, show_default=True)
@click.option("--compare-read", is_flag=True, help="First time a plain read of the same files, and print both rates.")
def convert(layout: str, src: str, out: str, splits_from: str | None, views: int, workers: int | None,
            objects_per_shard: int, compare_read: bool) -> None:
    """Convert a published LAYOUT tree SRC (SYNSET/OBJ/image_i.jpg + latent_i.npy) into orbitset shards in OUT."""
    from orbitset.datasets.convert import convert_3diebench, read_throughput, scan_tree

    baseline = None
    if compare_read:
        baseline = read_throughput(scan_tree(src, layout, splits_from, views), workers=workers)
        click.echo(f"plain read (cat-like, same files): {baseline.describe()}")
    report = convert_3diebench(src, out, layout=layout, splits_from=splits_from, views=views, workers=workers,
                               objects_per_shard=objects_per_shard)
    click.echo(report.summary())
    if baseline is not None:
        click.echo(f"conversion / plain read: {report.throughput.images_per_second / baseline.images_per_second:.2f} (images/s)")


@click.group()
def export() -> None:
    """Write an orbitset dataset in another layout."""


@export.command("sie-layout")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Root of the SYNSET/OBJ/ tree.")
def export_sie_layout_command(dataset: str, out: str) -> None:
    """Write DATASET as 3DIEBench's tree (SYNSET/OBJ/image_i.jpg + latent_i.npy) plus split and label .npy files."""
    from orbitset.datasets.convert import export_sie_layout

    report = export_sie_layout(dataset, out)
    click.echo(report.summary())


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (convert, export):
        app.add_command(command)
