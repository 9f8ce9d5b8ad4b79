"""CLI commands of orbitset.render (registered on the main app by orbitset.cli); heavy imports stay inside commands."""

from __future__ import annotations

import click


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
