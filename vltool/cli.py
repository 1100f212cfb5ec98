"""The ``vltool`` command line: parse, load + validate the recipe, call ONE stage, render.

No training code lives here and torch is never imported at module level, so ``vltool --help``
is instant; each command imports its stage when it runs. Any ``UserError`` becomes one line on
stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vltool import __version__
from vltool.cli_training import Launch, training_command
from vltool.errors import Interrupted, UserError, VltoolError

# soft_wrap: a printed line is never broken at COLUMNS (into a pipe or a log file Rich would wrap
# at 80); tables into a pipe are plain tab-separated lines (vltool.ui.tables).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
STATE: dict[str, Any] = {"debug": False}

app = typer.Typer(
    name="vltool",
    help="Build multimodal LLMs cheaply: VPGTrans (move a BLIP-2 visual prompt generator to a new "
    "LLM) and LaVIN's Mixture-of-Modality Adaptation (routed MM-Adapters), from recipe YAMLs.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
zoo_app = typer.Typer(help="Model aliases and the built-in demo world.", no_args_is_help=True)
recipes_app = typer.Typer(help="Discover, inspect, copy and validate recipe YAMLs.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
app.add_typer(recipes_app, name="recipes")

RecipeOpt = typer.Option(None, "--recipe", "-r", help="recipe YAML (a path or a shipped recipe name)")
OutOpt = typer.Option(..., "--out", "-o", help="output artifact folder (written atomically)")
ForceOpt = typer.Option(False, "--force", help="replace --out if it exists (and discard an unfinished run's checkpoints)")
SkipBadOpt = typer.Option(None, "--skip-bad-images/--no-skip-bad-images",
                          help="drop missing/corrupt images (counted in the manifest), or fail; default: recipe")
JsonOpt = typer.Option(False, "--json", help="print the result as JSON on stdout (progress stays on stderr)")


def _version(value: bool) -> None:
    if value:
        console.print(f"vltool {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="show full tracebacks on errors"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """vltool: VPGTrans + LaVIN MMA for any Hugging Face causal LM."""
    STATE["debug"] = debug


def _reporter():
    from vltool.ui.rich_reporter import RichReporter

    return RichReporter(err_console)


def _recipe(recipe: str | None, stage: str, overrides: list[str] | None, flags: dict[str, Any]):
    from vltool.config.shipped import load_named_recipe

    return load_named_recipe(recipe, stage, overrides, flags)


def _run_stage(fn, *args: Any, **kwargs: Any) -> Any:
    """Call a stage with a Rich reporter that is closed whatever happens."""
    import torch

    from vltool.ui.quiet import quiet_third_party

    quiet_third_party(debug=STATE["debug"])

    torch.set_flush_denormal(True)  # denormal floats slow CPUs 5-10x; see training.loop.make_accelerator
    reporter = _reporter()
    try:
        return fn(*args, reporter=reporter, **kwargs)
    except KeyboardInterrupt:  # before or after training: the loop itself raises Interrupted
        raise Interrupted("interrupted outside a training step; no artifact was written. Rerun the same "
                          "command with --resume to continue from the last checkpoint, if one was saved") from None
    except OSError as err:  # ENOSPC outside the guarded writers (a log line): one line, exit 4 (#23)
        from vltool.artifacts.disk_space import disk_full, is_disk_full

        if not is_disk_full(err):
            raise
        raise disk_full(Path(err.filename or "."), None, "a file") from err
    finally:
        reporter.close()


def _show_artifact(path: Path, as_json: bool = False) -> None:
    """The end-of-run table, grouped (result, metrics, data, converter, timing, other), or its JSON."""
    from vltool.artifacts import read_artifact
    from vltool.training.processes import is_main_process
    from vltool.ui.result import as_json as result_json
    from vltool.ui.result import group_manifest

    if not is_main_process():  # under `accelerate launch`, one table, not one per process
        return
    groups = group_manifest(str(path), read_artifact(path, verify=False).manifest)
    if as_json:
        from vltool.ui.json_output import print_json

        print_json(result_json(groups))
        return
    from vltool.ui.tables import show_groups

    show_groups(console, "result", groups)


def _print_dry_run(report: dict, as_json: bool = False) -> None:
    from vltool.ui.tables import show_rows

    if as_json:  # each table as a list of {column: value} rows, with its notes
        from vltool.ui.json_output import print_json

        tables = [report, *report.get("tables", [])]
        print_json([{"title": t["title"], "rows": [dict(zip(t["columns"], r)) for r in t["rows"]],
                     "notes": t.get("notes", [])} for t in tables])
        return
    show_rows(console, report["title"], report["columns"], report["rows"])
    for note in report.get("notes", []):
        console.print(f"[dim]{note}[/dim]")
    for table in report.get("tables", []):  # further tables of the report (VPGTrans: the run's cost)
        show_rows(console, table["title"], table["columns"], table["rows"])
        for note in table.get("notes", []):
            console.print(f"[dim]{note}[/dim]")


WARMUP_EPILOG = """[bold]Examples[/bold]

  vltool warmup --src demo-blip2-opt-s --dst demo-llama --data demo:caption --out runs/warm

  vltool warmup -r vpgtrans/opt6.7b-to-vicuna7b --data coco:karpathy_train.json --images coco/ \\
      --out runs/vicuna-warm train.lr=1e-4

  vltool warmup --src opt2.7b --dst vicuna7b --dry-run
"""




def _pin_revision(cfg, key: str, revision: str | None):
    """The recipe with ``key``'s model pinned to ``revision`` (recorded as ``spec@revision``)."""
    if not revision:
        return cfg
    from vltool.sources.hub_cache import with_revision

    return cfg.model_copy(update={key: with_revision(getattr(cfg, key), revision)})


def _execute(launch: Launch, o: Any, stage: str, pin: str) -> None:
    """The training commands' one skeleton: recipe (file, flags, overrides) -> --dry-run or the stage -> result."""
    cfg = _pin_revision(_recipe(o.recipe, stage, o.overrides, launch.flags), pin, o.revision)
    if o.dry_run:
        _print_dry_run(launch.dry_run(cfg), o.json_out)
        return
    result = _run_stage(launch.run, cfg, _need_out(o.out), force=o.force, resume=o.resume, **launch.kwargs)
    _show_artifact(result, o.json_out)


@training_command(app, "warmup", "warmup", "dst", WARMUP_EPILOG, _execute)
def warmup(o: Any, flags: dict[str, Any]) -> Launch:
    """Stage 1 of VPGTrans: inherit the source VPG, init the projector with the word converter, train the projector only."""
    from vltool.stages import vpgtrans

    return Launch(flags, vpgtrans.run_warmup, vpgtrans.dry_run)


TRANSFER_EPILOG = """[bold]Examples[/bold]

  vltool transfer --src demo-blip2-opt-s --dst demo-llama --data demo:caption --out runs/vpg

  vltool transfer --from-warmup runs/warm --data demo:caption --out runs/vpg

  vltool transfer -r vpgtrans/vicuna7b-chat --from-vpg runs/vpg --data cc_sbu_align:cc_sbu_align/ --out runs/chat

  vltool transfer --src demo-blip2-opt-s --dst demo-llama --data demo:caption --from-scratch --qformer demo-qformer-stage1 --out runs/scratch

  vltool transfer --src opt2.7b --dst vicuna7b --dry-run
"""


def _split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(positional arguments, dotted key=value overrides) of a command whose arguments are a list."""
    import re

    is_override = [bool(re.match(r"^[A-Za-z_][\w.]*=", a)) and not Path(a).exists() for a in args]
    return [a for a, o in zip(args, is_override) if not o], [a for a, o in zip(args, is_override) if o]


def _need_out(out: Path | None) -> Path:
    if out is None:
        raise UserError("--out is required (the folder the artifact is written to)")
    return out


@training_command(app, "transfer", "transfer", "dst", TRANSFER_EPILOG, _execute)
def transfer(o: Any, flags: dict[str, Any]) -> Launch:
    """VPGTrans: warm-up (unless --from-warmup), then fine-tune Q-Former + queries + ln_vision + projector."""
    from vltool.stages import vpg_chat, vpgtrans, warm_artifact

    if o.qformer is not None and not o.from_scratch:
        raise UserError("--qformer names the start of the from-scratch baseline; add --from-scratch")
    given = {k: v for k, v in flags.items() if v is not None}
    if o.from_vpg is not None:
        if o.from_warmup is not None or o.from_scratch:
            raise UserError("--from-vpg continues a finished vpg artifact; drop --from-warmup / --from-scratch")
        return Launch({**vpg_chat.flags_from_vpg(o.from_vpg), **given}, vpg_chat.run_from_vpg, vpgtrans.dry_run,
                      {"from_vpg": o.from_vpg})
    if o.from_warmup is not None:
        flags = {**warm_artifact.flags_from_warmup(o.from_warmup), **given}
    return Launch(flags, vpgtrans.run_transfer, vpgtrans.dry_run, {"from_warmup": o.from_warmup})


TUNE_EPILOG = """[bold]Examples[/bold]

  vltool tune-mma --model runs/vpg --data demo:sqa --data demo:text --out runs/mma

  vltool tune-mma -r mma/lavin-7b-scienceqa --data scienceqa:ScienceQA/ --out runs/lavin7b

  vltool tune-mma --model llama7b --front-end clip --dry-run
"""


@training_command(app, "tune-mma", "tune-mma", "model", TUNE_EPILOG, _execute)
def tune_mma(o: Any, flags: dict[str, Any]) -> Launch:
    """LaVIN Mixture-of-Modality Adaptation: routed MM-Adapters on a frozen LLM and vision encoder."""
    from vltool.stages import tune_mma as stage

    return Launch(flags, stage.run, stage.dry_run)


MERGE_EPILOG = """[bold]Examples[/bold]

  vltool merge runs/mma --out runs/merged            # image modality (default)

  vltool merge runs/mma --modality text --out runs/merged-text

  vltool merge runs/vpg --out runs/blip2-vicuna      # a vpg artifact -> standalone BLIP-2 folder
"""


@app.command(epilog=MERGE_EPILOG)
def merge(
    artifact: Path = typer.Argument(..., help="adapters or vpg artifact"),
    out: Path = OutOpt,
    modality: str = typer.Option("image", help="image | text: whose routing weights to fold in"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Fold the adapters into the base weights and write one standalone HF model folder."""
    if modality not in ("image", "text"):
        raise UserError(f"--modality must be image or text, got {modality!r}")
    from vltool.stages import merge as stage

    _show_artifact(_run_stage(stage.run, artifact, out, modality=modality, force=force), json_out)


EVAL_EPILOG = """[bold]Examples[/bold]

  vltool eval runs/merged --data demo:sqa --data demo:text --out runs/eval.json

  vltool eval runs/vpg runs/scratch --data demo:caption

  vltool eval --predictions preds.jsonl --data vqav2:questions.json,annotations.json
"""


@app.command("eval", epilog=EVAL_EPILOG)
def eval_(
    models: list[str] | None = typer.Argument(
        None, help="artifacts, merged HF folders or aliases, then optional dotted key=value overrides"),
    data: list[str] | None = typer.Option(None, "--data", "-d", help="dataset SPEC (repeatable)"),
    predictions: Path | None = typer.Option(None, help="score a saved predictions JSONL instead of a model"),
    images: str | None = typer.Option(None, help="image root for relative paths"),
    split: str | None = typer.Option(None, help="dataset split (default: recipe / test)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write metrics JSON (+ predictions beside it)"),
    max_samples: int | None = typer.Option(None, help="evaluate at most N samples per dataset"),
    num_beams: int | None = typer.Option(None, help="beam size (default: recipe / greedy)"),
    max_new_tokens: int | None = typer.Option(None, help="generation length limit (default: recipe)"),
    batch_size: int | None = typer.Option(None, help="samples per generation batch (default: recipe)"),
    skip_bad_images: bool | None = SkipBadOpt,
    recipe: str | None = RecipeOpt,
    force: bool = ForceOpt,
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON on stdout: "
                                  "{dataset: {model: {metric: value}}}"),
) -> None:
    """Generate with each model and score every dataset with its own metric; or score saved predictions."""
    models, overrides = _split_overrides(models or [])
    if not models and predictions is None:
        raise UserError("give at least one MODEL, or --predictions FILE.jsonl to score saved outputs")
    flags = {"data.eval": data or None, "data.images": images, "data.split": split,
             "data.skip_bad_images": skip_bad_images, "eval.max_samples": max_samples,
             "eval.num_beams": num_beams, "eval.max_new_tokens": max_new_tokens, "eval.batch_size": batch_size}
    cfg = _recipe(recipe, "eval", overrides, flags)
    from vltool.stages import evaluate as stage
    from vltool.ui.tables import show_metrics

    if predictions is not None:
        results = stage.score_predictions_file(cfg, predictions, out=out, force=force)
    else:
        results = _run_stage(stage.run, cfg, list(models or []), out=out, force=force)
    from vltool.training.processes import is_main_process

    if not is_main_process():  # under `accelerate launch`, one table, not one per process
        return
    if json_out:
        from vltool.ui.json_output import print_json

        print_json(results)
        return
    for dataset, by_model in results.items():
        show_metrics(console, dataset, by_model)


PREDICT_EPILOG = """[bold]Examples[/bold]

  vltool predict runs/merged --image cat.jpg                      # caption (empty prompt)

  vltool predict runs/vpg --image cat.jpg --prompt "Question: what is the cat on? Answer:"

  vltool predict runs/mma --image-dir photos/ --json > predictions.jsonl

  vltool predict runs/merged --requests requests.jsonl --num-beams 5   # {"image", "prompt", "id"} lines
"""


@app.command(epilog=PREDICT_EPILOG)
def predict(
    model: str = typer.Argument(..., help="vpg or adapters artifact, merged folder, BLIP-2 folder or alias"),
    image: list[str] | None = typer.Option(None, "--image", "-i", help="an image file (repeatable)"),
    image_dir: Path | None = typer.Option(None, "--image-dir", help="every image file in this folder (sorted)"),
    images: Path | None = typer.Option(None, "--images", hidden=True,
                                       help="old spelling of --image-dir (elsewhere --images is an image root)"),
    requests: Path | None = typer.Option(None, "--requests", help='JSONL of {"image", "prompt", "id"} requests'),
    prompt: str | None = typer.Option(None, "--prompt", "-p",
                                      help="prompt for every image (default: none, i.e. caption); alone: text-only"),
    json_lines: bool = typer.Option(False, "--json", help="print one JSON object per line: id, image, prompt, prediction"),
    max_new_tokens: int | None = typer.Option(None, help="generation length limit (default: eval's eval.max_new_tokens)"),
    num_beams: int | None = typer.Option(None, help="beam size, 1: greedy (default: eval's eval.num_beams)"),
    batch_size: int | None = typer.Option(None, help="requests per generation batch (default: eval's eval.batch_size)"),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help="skip missing/corrupt images"),
) -> None:
    """Caption images or answer prompts with a trained model; prints each prediction (or JSON lines)."""
    import json

    from vltool.config.deprecation import deprecated
    from vltool.stages import predict as stage

    if images is not None:
        deprecated("vltool predict --images", "--image-dir (--images is an image root in every other command)")
        image_dir = image_dir or images
    results = _run_stage(stage.run, model, images=image or (), images_dir=image_dir, requests=requests,
                         prompt=prompt, max_new_tokens=max_new_tokens, num_beams=num_beams,
                         batch_size=batch_size, skip_bad_images=skip_bad_images)
    from vltool.training.processes import is_main_process

    if not is_main_process():  # under `accelerate launch`, print once
        return
    for result in results:
        if json_lines:
            typer.echo(json.dumps(result.as_dict(), ensure_ascii=False))
        elif len(results) == 1:
            typer.echo(result.prediction)
        else:
            typer.echo(f"{result.id}\t{' '.join(result.prediction.split())}")


CONVERT_EPILOG = """[bold]Examples[/bold]

  vltool convert blip2_pretrained_opt2.7b.pth --dst opt2.7b --vision eva_vit_g.pth --out blip2-opt-2.7b-hf

  vltool convert stage2.pth --dst ./my-opt --vision-config vis.json --qformer-config qf.json --out hf/

  vltool convert blip2_pretrained.pth --vision eva_vit_g.pth --out blip2-stage1-hf   [dim](stage 1: no --dst)[/dim]
"""


@app.command(epilog=CONVERT_EPILOG)
def convert(
    checkpoint: Path = typer.Argument(..., help="LAVIS BLIP-2 .pth"),
    dst: str | None = typer.Option(None, "--dst", help="the LLM it was trained with: alias or HF folder (not for a "
                                                        "stage-1 blip2_pretrained.pth)"),
    out: Path = OutOpt,
    vision_config: Path | None = typer.Option(None, help="Blip2VisionConfig JSON for non-standard shapes"),
    qformer_config: Path | None = typer.Option(None, help="Blip2QFormerConfig JSON for non-standard shapes"),
    vision: Path | None = typer.Option(None, "--vision", help="separate ViT .pth when the checkpoint has no ViT weights"),
    llm: str | None = typer.Option(None, "--llm", hidden=True, help="old spelling of --dst"),
    vit: Path | None = typer.Option(None, "--vit", hidden=True, help="old spelling of --vision"),
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Turn a LAVIS BLIP-2 checkpoint + its LLM into an HF Blip2ForConditionalGeneration folder
    (a stage-1 blip2_pretrained.pth, with no LLM: a Blip2ForImageTextRetrieval folder)."""
    from vltool.config.deprecation import deprecated
    from vltool.stages import convert as stage

    if llm is not None:
        deprecated("vltool convert --llm", "--dst (the LLM, as in warmup and transfer)")
        dst = dst or llm
    if vit is not None:
        deprecated("vltool convert --vit", "--vision (the vision model, as in tune-mma)")
        vision = vision or vit
    _show_artifact(
        _run_stage(stage.run, checkpoint, dst, out, vision_config=vision_config,
                   qformer_config=qformer_config, vision=vision, force=force), json_out
    )


@zoo_app.command("list", epilog="[bold]Example[/bold]\n\n  vltool zoo list")
def zoo_list(json_out: bool = typer.Option(False, "--json", help="print a JSON list of {alias, role, resolves_to, "
                                                                 "local_path, present}")) -> None:
    """Every model alias, what it resolves to, and whether it is present locally."""
    from vltool.stages import zoo
    from vltool.ui.tables import show_rows

    rows = zoo.list_rows()
    if json_out:
        from vltool.ui.json_output import print_json

        keys = ["alias", "role", "resolves_to", "local_path", "present"]
        print_json([dict(zip(keys, [*row[:3], None if row[3] == "-" else row[3], row[4]])) for row in rows])
        return
    show_rows(console, "model aliases", ["alias", "role", "resolves to", "local path", "present"], rows)


@zoo_app.command("build", epilog="[bold]Example[/bold]\n\n  VLTOOL_HOME=~/vl vltool zoo build")
def zoo_build(
    force: bool = typer.Option(False, "--force", help="rebuild even if the cached world is valid"),
    seed: int = typer.Option(0, help="the world's seed"),
    quick: bool = typer.Option(False, "--quick", help="the small world of 'vltool demo --quick' and the tests"),
    only: str | None = typer.Option(None, "--only", help="comma-separated models to build (plus what they need), "
                                                         "e.g. demo-llama,demo-blip2-opt-s"),
) -> None:
    """Build (or verify) the demo world: images, tokenizers, tiny LMs and the source BLIP-2 model."""
    from vltool.demo.build import build_summary
    from vltool.ui.tables import show_rows

    models = [m.strip() for m in only.split(",") if m.strip()] if only else None
    info = _run_stage(build_summary, seed=seed, force=force, quick=quick, only=models)
    show_rows(console, "demo world", ["item", "value"], info["rows"])


@recipes_app.command("list", epilog="[bold]Example[/bold]\n\n  vltool recipes list")
def recipes_list(json_out: bool = typer.Option(False, "--json", help="print a JSON list of {name, stage, file}")) -> None:
    """The shipped recipes with their stage."""
    from vltool.config.loader import read_yaml
    from vltool.config.shipped import list_recipes
    from vltool.ui.tables import show_rows

    rows = [[name, read_yaml(path).get("stage", "?"), str(path)] for name, path in list_recipes()]
    if json_out:
        from vltool.ui.json_output import print_json

        print_json([dict(zip(["name", "stage", "file"], row)) for row in rows])
        return
    show_rows(console, "recipes", ["name", "stage", "file"], rows)


@recipes_app.command("show", epilog="[bold]Example[/bold]\n\n  vltool recipes show vpgtrans/opt6.7b-to-vicuna7b")
def recipes_show(
    name: str = typer.Argument(..., help="shipped recipe name or path"),
    resolved: bool = typer.Option(False, "--resolved", help="print every key with defaults filled in"),
) -> None:
    """Print a recipe: the file byte for byte (so `recipes show X > my.yaml` starts your own), or
    with --resolved, valid YAML of every key with defaults filled in."""
    from vltool.config.shipped import find_recipe

    path = find_recipe(name)
    if not resolved:
        _write_stdout(path.read_bytes())
        return
    import yaml

    from vltool.config.loader import read_yaml, validate_recipe

    cfg = validate_recipe(read_yaml(path), str(path))
    _write_stdout(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, width=float("inf")).encode())


def _write_stdout(data: bytes) -> None:
    """Bytes to stdout as they are: no Rich wrapping, markup or colour."""
    out = sys.stdout
    if hasattr(out, "buffer"):
        out.flush()
        out.buffer.write(data)
        out.buffer.flush()
    else:  # a text-only stream (a test harness)
        out.write(data.decode())


@recipes_app.command("copy", epilog="[bold]Example[/bold]\n\n  vltool recipes copy demo/transfer my-transfer.yaml")
def recipes_copy(
    name: str = typer.Argument(..., help="shipped recipe name"),
    dest: Path = typer.Argument(..., help="where to write the copy"),
    force: bool = ForceOpt,
) -> None:
    """Copy a shipped recipe to start your own from it."""
    from vltool.config.shipped import find_recipe

    source = find_recipe(name)
    target = dest / source.name if dest.is_dir() else dest
    if target.exists() and not force:
        raise UserError(f"{target} already exists; pass --force to overwrite it")
    target.write_text(source.read_text())
    console.print(f"copied {source} -> {target}")


@recipes_app.command("validate", epilog="[bold]Example[/bold]\n\n  vltool recipes validate my-transfer.yaml")
def recipes_validate(files: list[Path] = typer.Argument(..., help="recipe files to check")) -> None:
    """Check recipe files against the schema; every error of every file is reported."""
    from vltool.config.loader import read_yaml, validate_recipe

    problems = []
    for path in files:
        try:
            validate_recipe(read_yaml(path), str(path))
            console.print(f"[green]ok[/green] {path}")
        except UserError as err:
            problems.append(str(err))
    if problems:
        raise UserError("\n".join(problems))


DEMO_EPILOG = """[bold]Examples[/bold]

  vltool demo --out demo-out

  vltool demo --quick --out demo-quick
"""


@app.command(epilog=DEMO_EPILOG)
def demo(
    out: Path = typer.Option(..., "--out", "-o", help="report folder"),
    quick: bool = typer.Option(False, "--quick", help="a smoke run (about 40 s on 2 cores) on a smaller world, with fewer steps"),
    force: bool = ForceOpt,
) -> None:
    """The whole pipeline on the demo world: warmup -> transfer (+ scratch baseline) -> tune-mma -> merge -> eval."""
    import json

    from vltool.demo import pipeline
    from vltool.ui.tables import show_demo_summary

    report = _run_stage(pipeline.run, out, quick=quick, force=force,
                        announce=lambda text: console.rule(f"[bold]{text}[/bold]"))
    show_demo_summary(console, json.loads((report.parent / "report.json").read_text()))
    console.print(f"report: {report}  (plots in {report.parent / 'plots'})")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning vltool's errors into one line and their exit code.

    Exit codes: 0 ok, 2 bad input, 3 a diverged run (non-finite loss), 4 out of disk space, 130
    interrupted (Ctrl-C).
    """
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        app(args=argv, standalone_mode=True)
    except VltoolError as err:
        if debug or os.environ.get("VLTOOL_DEBUG"):
            raise
        for line in str(err).splitlines() or ["error"]:
            err_console.print(f"[bold red]error:[/bold red] {line}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(err.exit_code)
