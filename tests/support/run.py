"""Running vltool the two ways the tests need: in-process (fast, errors raised) and as a real process.

``invoke`` calls the Typer app in this process: a user error is raised as itself and exit 0 is
asserted. ``vltool`` runs the installed console script (or ``python -m vltool``, or
``accelerate launch`` with N processes) the way a user's shell does, with a fixed terminal width,
and returns the ``CompletedProcess`` whatever the exit code, so a test can assert on it.
``launch`` runs any script under a real multi-process CPU ``accelerate launch``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from typer.testing import CliRunner

from vltool.cli import app

TESTS = Path(__file__).resolve().parents[1]  # tests/: on a script's PYTHONPATH so it imports ``support``
VLTOOL = str(Path(sys.executable).parent / "vltool")  # the installed console script
# A real 2-process CPU launch (plain ``--cpu --num_processes 2`` silently starts ONE process; see README).
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]


def invoke(args: list[str]):
    """The Typer app in this process with a 200-column terminal; raises what it raised, asserts exit 0."""
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def child_env(env: Mapping[str, str | None] | None = None, *, home: Path | None = None, columns: int | None = 200,
              fault: str = "", inherit: bool = True, scripts: bool = False) -> dict[str, str]:
    """A child's environment: this one (unless ``inherit`` is False) with one torch thread, a fixed
    terminal width, the quick demo world under ``home``, a fault to inject, and for ``scripts`` ``tests/``
    on PYTHONPATH (a script under tests/support imports ``support``)."""
    out = dict(os.environ) if inherit else {}
    if inherit:
        out["OMP_NUM_THREADS"] = "1"
    if scripts:
        out["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    if columns is not None:
        out["COLUMNS"] = out["TERMINAL_WIDTH"] = str(columns)
    if home is not None:
        out.update(VLTOOL_HOME=str(home), VLTOOL_DEMO_PROFILE="quick")
    if fault:
        out["VLTOOL_FAULT_AFTER_STEP"] = fault
    for key, value in (env or {}).items():  # None: the child must not see this variable
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def vltool(args: Sequence[str], *, home: Path | None = None, env: Mapping[str, str | None] | None = None,
           columns: int | None = 200, fault: str = "", module: bool = False, processes: int | None = None,
           inherit: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run vltool as a separate process and return what it did (never raises on its exit code).

    ``module``: ``python -m vltool`` instead of the console script; ``processes``: under
    ``accelerate launch`` with that many CPU processes (DDP over gloo when more than one);
    ``kwargs`` go to ``subprocess.run`` (e.g. ``stdout=handle``). Output is captured as text
    unless a stream is given.
    """
    if processes is not None:
        command = [*ACCELERATE, "--num_processes", str(processes), *(["--multi_gpu"] if processes > 1 else []),
                   "-m", "vltool"]
    else:
        command = [sys.executable, "-m", "vltool"] if module else [VLTOOL]
    environment = child_env(env, home=home, columns=columns, fault=fault, inherit=inherit)
    if processes is not None:
        environment["ACCELERATE_USE_CPU"] = "1"
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run([*command, *args], env=environment, text=True, timeout=timeout, check=False, **kwargs)


def launch(script: str | Path, args: Sequence[str] = (), *, processes: int = 2,
           env: Mapping[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python script under ``accelerate launch`` with ``processes`` CPU processes; assert it succeeded."""
    environment = child_env({"ACCELERATE_USE_CPU": "1", **(env or {})}, scripts=True)
    command = [*ACCELERATE, "--multi_gpu", "--num_processes", str(processes), str(script), *map(str, args)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def python(script: str | Path, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python script in a fresh interpreter (``tests/`` importable); returns whatever it did."""
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=child_env(env, scripts=True), capture_output=True,
                          text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess) -> None:
    """Assert a ``vltool`` run succeeded, showing the end of its stderr when it did not."""
    assert result.returncode == 0, result.stderr[-3000:]
