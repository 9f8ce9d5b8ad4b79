"""The `orbitset` console script: thin commands over the library.

Each part of the package registers its commands from its own ``commands.py`` (render, datasets, manifests, loaders,
models); those modules import heavy dependencies inside the command bodies only. Errors raised by the library and
usage errors are printed as one line on stderr, with exit status 2 and no traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from orbitset.errors import OrbitsetError

COMMAND_MODULES = (
    "orbitset.render.commands",
    "orbitset.datasets.commands",
    "orbitset.manifests.commands",
    "orbitset.loaders.commands",
    "orbitset.models.commands",
    "orbitset.publish.commands",
    "orbitset.symmetry.commands",
)


@click.group(name="orbitset", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def app() -> None:
    """Datasets of orbits: render 3D meshes under known transformations, verify, download, convert, load and train."""


@app.command()
def version() -> None:
    """Print the versions of orbitset and of its main dependencies."""
    from orbitset.manifests.model import software_versions

    for name, value in software_versions().items():
        click.echo(f"{name} {value}")


@app.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", type=click.Path(), default=None,
              help="PNG to write [default: contact_sheet.png, or pair_sheet.png with --pairs, beside the manifest].")
@click.option("--objects", default=6, show_default=True, help="Rows: objects (or pairs with --pairs) to show.")
@click.option("--views", default=8, show_default=True, help="Views per object, evenly spaced.")
@click.option("--split", default=None, help="Only objects of this split.")
@click.option("--tile", default=128, show_default=True, help="Tile side in pixels.")
@click.option("--pairs", is_flag=True, help="Show pairs as PairLoader delivers them, with their relative rotation.")
@click.option("--seed", default=0, show_default=True, help="PairLoader seed (with --pairs).")
def show(dataset: str, out: str | None, objects: int, views: int, split: str | None, tile: int, pairs: bool,
         seed: int) -> None:
    """Draw DATASET (folder, manifest or one shard): one row per object, its views labelled with their factor values
    and its point cloud; with --pairs, loader pairs with the relative rotation as axis and angle."""
    from pathlib import Path

    from orbitset.manifests.model import manifest_path
    from orbitset.show import contact_sheet, pair_sheet

    folder = Path(dataset).parent if dataset.endswith(".tar") else manifest_path(dataset).parent
    if pairs:
        target = Path(out) if out else folder / "pair_sheet.png"
        click.echo(f"wrote {pair_sheet(dataset, target, pairs=objects, split=split, tile=tile, seed=seed)}")
    else:
        target = Path(out) if out else folder / "contact_sheet.png"
        click.echo(f"wrote {contact_sheet(dataset, target, objects=objects, views=views, split=split, tile=tile)}")


@app.command()
@click.option("--out", type=click.Path(), default="demo-out", show_default=True, help="Folder for everything the demo makes.")
@click.option("--objects", default=None, type=int, help="Procedural objects to render [default: 600].")
@click.option("--views", default=None, type=int, help="Views per object [default: 12].")
@click.option("--size", default=None, type=int, help="Image side in pixels [default: 64].")
@click.option("--workers", default=None, type=int, help="Render worker processes [default: 2].")
@click.option("--epochs", default=None, type=int, help="Training epochs of SIE and VICReg [default: 20].")
@click.option("--no-train", is_flag=True, help="Skip training and evaluation.")
def demo(out: str, objects: int | None, views: int | None, size: int | None, workers: int | None, epochs: int | None,
         no_train: bool) -> None:
    """Render, verify, show, publish and load a dataset, train and probe SIE and VICReg; summary in OUT/README.md."""
    import dataclasses

    from orbitset.demo import DemoPlan, run_demo

    given = dict(objects=objects, views=views, size=size, workers=workers, epochs=epochs)
    plan = dataclasses.replace(DemoPlan(train=not no_train), **{k: v for k, v in given.items() if v is not None})
    run_demo(out, plan)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 command failed, 2 usage or library error)."""
    if not (sys.argv[1:] if argv is None else argv):
        click.echo(app.get_help(click.Context(app, info_name="orbitset")))
        return 0
    try:
        status = app.main(args=argv, prog_name="orbitset", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "orbitset"
        click.echo(f"{command}: error: {exc.format_message()} (see '{command} --help')", err=True)
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("orbitset: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"orbitset: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except OrbitsetError as exc:
        click.echo(f"orbitset: error: {exc}", err=True)
        return 2


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
