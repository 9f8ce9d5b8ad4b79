"""`orbitset card`: the dataset card and Croissant metadata of a dataset."""

from __future__ import annotations

import click


def register(app: click.Group) -> None:
    @app.command()
    @click.argument("dataset", type=click.Path(exists=True))
    @click.option("--license", "license_", default=None,
                  help="Licence identifier for the card and croissant.json [default: cc-by-nc-4.0 for converted "
                       "3DIEBench, else 'other'].")
    @click.option("--url", default=None, help="Where the dataset is published (Croissant 'url') [default: the folder].")
    @click.option("--no-sheet", is_flag=True, help="Do not draw or link contact_sheet.png.")
    def card(dataset: str, license_: str | None, url: str | None, no_sheet: bool) -> None:
        """Write README.md (a Hugging Face dataset card) and croissant.json beside DATASET's manifest."""
        from orbitset.publish.card import default_license, write_card
        from orbitset.publish.croissant import write_croissant
        from orbitset.publish.facts import read_facts

        facts = read_facts(dataset, progress=True)
        license_ = license_ or default_license(facts)
        click.echo(f"wrote {write_croissant(facts, license=license_, url=url)}")
        click.echo(f"wrote {write_card(facts, license=license_, contact_sheet=not no_sheet)}")
