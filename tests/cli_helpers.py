"""Invoking the Typer app in-process the way the tests need: user errors raised, exit 0 asserted."""

from __future__ import annotations

from typer.testing import CliRunner

from vltool.cli import app


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result
