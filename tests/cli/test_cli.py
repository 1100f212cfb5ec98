"""The CLI surface: instant help without torch, one-line errors with exit code 2, recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.run import python, vltool
from typer.testing import CliRunner

from vltool import __version__
from vltool.cli import app, main
from vltool.errors import UserError

runner = CliRunner()


def test_help_does_not_import_torch() -> None:
    code = "import sys; from vltool.cli import app; app(['--help'], standalone_mode=False); " \
           "print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = python("-c", [code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_every_command_has_help_with_an_example() -> None:
    for command in ["warmup", "transfer", "tune-mma", "merge", "eval", "convert", "demo",
                    "zoo list", "zoo build", "recipes list", "recipes show", "recipes copy",
                    "recipes validate"]:
        result = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        assert "Example" in result.output, command


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def _run_main(args: list[str]):
    """``python -m vltool`` in a bare environment (no VLTOOL_HOME, no venv on PATH)."""
    return vltool(args, module=True, inherit=False, env={"PATH": "/usr/bin:/bin"})


def test_bad_recipe_key_is_one_line_exit_2_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("stage: transfer\nsrc: a\ndst: b\ntrian: {}\n")
    result = _run_main(["recipes", "validate", str(bad)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown key 'trian'; did you mean 'train'?" in lines[0]
    debug = _run_main(["--debug", "recipes", "validate", str(bad)])
    assert "Traceback" in debug.stderr


def test_missing_recipe_and_bad_override_exit_2(tmp_path: Path) -> None:
    assert _run_main(["transfer", "-r", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]).returncode == 2
    result = _run_main(["transfer", "--src", "a", "--dst", "b", "--out", str(tmp_path / "o"), "trainlr"])
    assert result.returncode == 2 and "must look like key=value" in result.stderr


def test_recipes_list_show_copy_validate(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["recipes", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "vpgtrans/opt6.7b-to-vicuna7b" in listed.output
    shown = runner.invoke(app, ["recipes", "show", "vpgtrans/opt6.7b-to-vicuna7b"])
    assert "dst: vicuna7b" in shown.output
    copy = tmp_path / "mine.yaml"
    assert runner.invoke(app, ["recipes", "copy", "demo/tune-mma", str(copy)]).exit_code == 0
    assert "stage: tune-mma" in copy.read_text()
    again = runner.invoke(app, ["recipes", "copy", "demo/tune-mma", str(copy)])
    assert isinstance(again.exception, UserError) and "already exists" in str(again.exception)
    ok = runner.invoke(app, ["recipes", "validate", str(copy)])
    assert ok.exit_code == 0


def test_main_turns_user_errors_into_exit_code_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["recipes", "show", "no/such-recipe"])
    assert exit_.value.code == 2
    assert "no recipe named 'no/such-recipe'" in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(b"")
    result = _run_main(["convert", str(tmp_path / "x.pth"), "--llm", "opt2.7b", "--out", str(tmp_path / "o")])
    assert result.returncode == 2 and "x.pth" in result.stderr and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        result.stderr.strip().splitlines()[-1]] and not (tmp_path / "o").exists()
