"""The training commands' options, as one table, and the one skeleton every training command runs.

``warmup``, ``transfer`` and ``tune-mma`` share most of their options (data, output, recipe,
resume, trackers, ``--json``...) and the same steps: flags -> recipe -> ``--dry-run`` or the stage ->
the result. Each option is written once in ``OPTIONS`` with the recipe key it sets per command, and
``training_command`` builds the Typer command from the rows that name it. What a command does
beyond that (``--from-warmup``, ``--from-vpg``, ``--from-scratch``) is its own small function.

Typer reads a command's options from its signature, so the built command carries a synthesised
``__signature__``. Nothing here imports torch: ``vltool --help`` stays instant.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer

VPG = frozenset({"warmup", "transfer"})
ALL = frozenset({"warmup", "transfer", "tune-mma"})


@dataclass(frozen=True)
class Option:
    """One command-line option: its parameter name, Typer declaration, type, and the recipe key it
    sets in each command that has it (None: the command handles the value itself)."""

    name: str
    annotation: Any
    info: Any  # typer.Option(...) / typer.Argument(...)
    keys: dict[str, str | None] = field(default_factory=dict)

    def key(self, command: str) -> str | None:
        return self.keys.get(command, self.keys.get("*"))


def _opt(name: str, annotation: Any, info: Any, commands: frozenset[str], key: str | None = None,
         **per_command: str | None) -> Option:
    keys = {c: key for c in commands}
    keys.update({c.replace("_", "-"): k for c, k in per_command.items()})
    return Option(name, annotation, info, keys)


OPTIONS: list[Option] = [
    _opt("src", str | None, typer.Option(None, help="source: alias, HF BLIP-2 folder or vpg artifact"), VPG, "src"),
    _opt("dst", str | None, typer.Option(None, help="target LLM: alias or HF causal-LM folder"), VPG, "dst"),
    _opt("model", str | None, typer.Option(None, help="vpg artifact / BLIP-2 folder (qformer) or LLM (clip)"),
         frozenset({"tune-mma"}), "model"),
    _opt("front_end", str | None, typer.Option(None, help="qformer | clip"), frozenset({"tune-mma"}), "front_end"),
    _opt("vision", str | None, typer.Option(None, help="CLIP vision model folder for the clip front end"),
         frozenset({"tune-mma"}), "vision"),
    _opt("data", list[str] | None,
         typer.Option(None, "--data", "-d", help="training data SPEC (repeatable; `coco:A.json@0.3` weighs a source; "
                      "warmup: sets warmup.data)"),
         ALL, "data.train", warmup="warmup.data"),
    _opt("val_data", list[str] | None, typer.Option(None, "--val-data", help="validation data SPEC"), ALL, "data.val"),
    _opt("images", str | None, typer.Option(None, help="image root for relative paths"), ALL, "data.images"),
    _opt("out", Path | None, typer.Option(None, "--out", "-o", help="output artifact folder (written atomically)"), ALL),
    _opt("recipe", str | None,
         typer.Option(None, "--recipe", "-r", help="recipe YAML (a path or a shipped recipe name)"), ALL),
    _opt("from_warmup", Path | None, typer.Option(None, help="continue from a warm-up artifact"),
         frozenset({"transfer"})),
    _opt("from_vpg", Path | None,
         typer.Option(None, "--from-vpg", help="one more VPG stage from a finished vpg artifact on the recipe's data "
                      "and layout (VL-Vicuna's chat stage 3: -r vpgtrans/vicuna7b-chat --data cc_sbu_align:DIR)"),
         frozenset({"transfer"})),
    _opt("from_scratch", bool,
         typer.Option(False, "--from-scratch", help="the paper's baseline: stage 2 from a stage-1 Q-Former (--qformer) "
                      "with a random projector"),
         frozenset({"transfer"}), "from_scratch"),
    _opt("qformer", str | None,
         typer.Option(None, "--qformer", help="with --from-scratch: the stage-1 Q-Former to start from (blip2-stage1, "
                      "a converted blip2_pretrained.pth, demo-qformer-stage1) or 'random' (ablation)"),
         frozenset({"transfer"}), "scratch_qformer"),
    # Switches a recipe can set either way take both spellings, so a flag can undo the recipe.
    _opt("converter", bool | None,
         typer.Option(None, "--converter/--no-converter",
                      help="word-converter projector init, or a random one (ablation); default: recipe"),
         VPG, "converter.enabled"),
    _opt("warmup_lr_mult", float | None, typer.Option(None, help="warm-up LR = this x train.lr (paper: 5)"), VPG,
         "warmup.lr_mult"),
    _opt("feature_cache", bool | None,
         typer.Option(None, "--feature-cache/--no-feature-cache",
                      help="cache the frozen VPG's outputs in the warm-up, or recompute them; default: recipe"),
         VPG, "warmup.feature_cache"),
    _opt("router", bool | None,
         typer.Option(None, "--router/--no-router",
                      help="routed adapters, or one shared adapter (ablation); default: recipe"),
         frozenset({"tune-mma"}), "adapter.router"),
    _opt("skip_bad_images", bool | None,
         typer.Option(None, "--skip-bad-images/--no-skip-bad-images",
                      help="drop missing/corrupt images (counted in the manifest), or fail; default: recipe"),
         ALL, "data.skip_bad_images"),
    _opt("resume", bool,
         typer.Option(False, "--resume", help="continue an interrupted run from its last checkpoint (beside --out)"),
         ALL),
    _opt("dry_run", bool,
         typer.Option(False, "--dry-run", help="print parameter counts, memory and cost; train nothing"), ALL),
    _opt("force", bool,
         typer.Option(False, "--force", help="replace --out if it exists (and discard an unfinished run's "
                      "checkpoints)"), ALL),
    _opt("revision", str | None,
         typer.Option(None, "--revision", help="hub branch, tag or commit of the target (--dst / --model); also "
                      "SPEC@REV"), ALL),
    _opt("report_to", str | None,
         typer.Option(None, "--report-to", help="experiment trackers (train.report_to): tensorboard, wandb, mlflow, "
                      "aim, comet_ml, clearml or none; comma-separated for several"), ALL, "train.report_to"),
    _opt("run_name", str | None,
         typer.Option(None, "--run-name", help="the tracker's run name (train.run_name; default: the --out folder's "
                      "name)"), ALL, "train.run_name"),
    _opt("tracking_dir", Path | None,
         typer.Option(None, "--tracking-dir", help="folder of local tracker logs (train.tracking_dir; default: "
                      "'tracking' beside --out), e.g. tensorboard --logdir DIR"), ALL, "train.tracking_dir"),
    _opt("json_out", bool,
         typer.Option(False, "--json", help="print the result as JSON on stdout (progress stays on stderr)"), ALL),
    _opt("overrides", list[str] | None,
         typer.Argument(None, help="dotted key=value overrides, e.g. train.lr=3e-4", show_default=False), ALL),
]


def recipe_flags(command: str, values: dict[str, Any]) -> dict[str, Any]:
    """The recipe keys the given options set (None: not given, the recipe's value stays)."""
    flags: dict[str, Any] = {}
    for option in OPTIONS:
        key = option.key(command)
        if key is None or option.name not in values:
            continue
        value = values[option.name]
        if isinstance(value, list) or option.annotation is bool:  # an empty list / a False switch: not given
            value = value or None
        if isinstance(value, Path):
            value = str(value)
        flags[key] = value
    return flags


@dataclass
class Launch:
    """What a training command asks the skeleton to do: the recipe flags, the stage call, and the
    extra keyword arguments it takes (``from_warmup``...)."""

    flags: dict[str, Any]
    run: Callable[..., Any]
    dry_run: Callable[[Any], dict]
    kwargs: dict[str, Any] = field(default_factory=dict)


def training_command(app: typer.Typer, command: str, stage: str, pin: str, epilog: str,
                     execute: Callable[[Launch, SimpleNamespace, str, str], None]) -> Callable:
    """Register ``plan`` as the Typer command ``command``, with the table's options for it.

    ``plan(options, flags) -> Launch`` is the command's own part; ``execute`` (the CLI's) loads
    the recipe for ``stage``, pins ``pin``'s revision, and dry-runs or runs the stage."""

    def register(plan: Callable[[SimpleNamespace, dict[str, Any]], Launch]) -> Callable:
        rows = [o for o in OPTIONS if command in o.keys]

        def cli_command(**values: Any) -> None:
            options = SimpleNamespace(**values)
            execute(plan(options, recipe_flags(command, values)), options, stage, pin)

        cli_command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.info, annotation=o.annotation)
            for o in rows])
        cli_command.__annotations__ = {o.name: o.annotation for o in rows}
        cli_command.__doc__ = plan.__doc__
        cli_command.__name__ = plan.__name__
        app.command(command, epilog=epilog)(cli_command)
        return cli_command

    return register
