"""CLI commands of orbitset.loaders (registered on the main app by orbitset.cli); heavy imports stay inside commands."""

from __future__ import annotations

import click


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
