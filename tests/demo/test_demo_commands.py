"""The demo's steps: command lines equal to recipes/demo.sh, and each line makes the stage call the demo makes."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from vltool.demo import pipeline

REPO = Path(__file__).resolve().parents[2]


def shell_commands(script: Path, out: str) -> list[list[str]]:
    """The vltool command lines of a shell script, variables substituted, continuations joined."""
    text = script.read_text().replace("\\\n", " ")
    values = {"out": out, "runs": f"{out}/runs", "recipe": pipeline.RECIPE}
    lines = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        words = [w for w in words if "=" not in w or not w.split("=")[0].isupper()]  # OMP_NUM_THREADS=1 ...
        if not words or words[0] != "vltool":
            continue
        cut = next((i for i, w in enumerate(words) if w in (">", "&", "2>&1") or w.startswith(">")), len(words))
        words = words[1:cut]
        for name, value in values.items():
            words = [w.replace(f"${name}", value) for w in words]
        lines.append(words)
    return lines


def test_demo_sh_runs_the_demo_pipeline_lines() -> None:
    steps = pipeline.commands(Path("demo-out"), quick=False)
    assert shell_commands(REPO / "recipes" / "demo.sh", "demo-out") == [s.argv for s in steps]
    assert [s.name for s in steps if s.background] == ["from scratch"]


def test_report_prints_the_same_lines() -> None:
    steps = pipeline.commands(Path("demo-out"), quick=False)
    assert [pipeline.command_line(s) for s in steps] == \
        ["vltool " + shlex.join(words) for words in shell_commands(REPO / "recipes" / "demo.sh", "demo-out")]


@pytest.mark.parametrize("quick", [False, True])
def test_each_command_line_makes_the_stage_call_of_its_step(quick: bool, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """Run every step twice with the stages replaced by recorders: once as its command line through
    the CLI, once as the demo's own call. Both must reach the same stage with the same recipe."""
    import inspect

    from vltool.cli import app
    from vltool.demo import build
    from vltool.stages import evaluate, merge, tune_mma, vpgtrans, warm_artifact

    calls: list[tuple[str, Any]] = []

    def recorder(name: str, returns: Any = None):
        module, _, attr = name.rpartition(".")
        real = getattr({"build": build, "merge": merge, "tune_mma": tune_mma, "evaluate": evaluate}.get(module, vpgtrans),
                       attr)
        defaults = {k: p.default for k, p in inspect.signature(real).parameters.items()}

        def record(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("reporter", None)
            kwargs = {k: v for k, v in kwargs.items() if not (k in defaults and defaults[k] == v)}
            args = [a.model_dump(mode="json") if hasattr(a, "model_dump") else a for a in args]
            calls.append((name, [str(a) if isinstance(a, Path) else a for a in args],
                          {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}))
            return returns
        return record

    monkeypatch.setattr(build, "build_summary", recorder("build.build_summary", {"rows": []}))  # the CLI's
    monkeypatch.setattr(pipeline, "build_summary", build.build_summary)  # the demo's: the same recorder
    monkeypatch.setattr(vpgtrans, "run_warmup", recorder("run_warmup"))
    monkeypatch.setattr(vpgtrans, "run_transfer", recorder("run_transfer"))
    monkeypatch.setattr(warm_artifact, "flags_from_warmup", lambda path: {"src": "demo-blip2-opt-s", "dst": "demo-llama"})
    monkeypatch.setattr(merge, "run", recorder("merge.run"))
    monkeypatch.setattr(tune_mma, "run", recorder("tune_mma.run"))
    monkeypatch.setattr(evaluate, "run", recorder("evaluate.run", {}))
    monkeypatch.setattr("vltool.cli._show_artifact", lambda path, *a, **k: None)
    for step in pipeline.commands(tmp_path, quick):
        calls.clear()
        app(step.argv, standalone_mode=False)
        step.call(None)
        assert len(calls) == 2, step.name
        by_cli, by_demo = calls
        assert by_cli[0] == by_demo[0], step.name
        assert (by_cli[1], by_cli[2]) == (by_demo[1], by_demo[2]), step.name  # defaults left out on both sides
