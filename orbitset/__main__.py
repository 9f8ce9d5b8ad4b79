"""`python -m orbitset` runs the CLI."""

from orbitset.cli import run

run()
