"""`orbitset render --help` documents every option; bad options give one-line errors."""

from __future__ import annotations

from click.testing import CliRunner

from orbitset.cli import app, main
from orbitset.render.commands import render


def test_help_documents_every_option():
    text = CliRunner().invoke(app, ["render", "--help"], terminal_width=200).output
    for param in render.params:
        assert param.opts[0] in text
        assert param.help, f"{param.opts[0]} has no help text"


def test_unknown_recipe_is_a_one_line_error(tmp_path, capsys):
    assert main(["render", "--recipe", "nope", "--assets", "procedural", "--out", str(tmp_path / "o")]) == 2
    assert "not a shipped recipe" in capsys.readouterr().err
