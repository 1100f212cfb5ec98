"""``vltool demo``: the whole pipeline on the demo world, step by step as a user chains it.

zoo build -> warmup -> transfer --from-warmup (demo-blip2-opt-s -> demo-llama) beside a
--from-scratch baseline -> merge -> tune-mma (routed, and one shared adapter for the ablation)
-> merge of the adapters -> eval, then ``report.json``, ``report.md`` and PNG plots.

Each step is written twice, side by side: as the ``vltool`` command line (what ``recipes/demo.sh``
types and the report prints) and as the stage call that command makes (recipe loaded with the
same overrides and flags). Tests keep the two equal, and the command lines equal to
``recipes/demo.sh``. The from-scratch arm runs as a real ``vltool`` subprocess beside the chain.
This is the demo plugin's application layer: it may use stages, never the CLI module.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vltool.artifacts import ensure_writable
from vltool.artifacts.environment import package_versions
from vltool.config.shipped import load_named_recipe
from vltool.data.device_pixels import normalise_batch, scale_of
from vltool.data.specs import load_spec
from vltool.demo import report as rep
from vltool.demo.build import build_summary
from vltool.demo.findings import findings
from vltool.errors import UserError
from vltool.eval.curves import read_curve, speedup
from vltool.eval.metric_fields import describe, is_metric
from vltool.eval.predictors import load_predictor
from vltool.stages import evaluate, merge, tune_mma, vpgtrans, warm_artifact
from vltool.training.progress import NullReporter, Reporter

RECIPE = "demo/transfer-opt-s-to-llama"
MMA_RECIPE = "demo/tune-mma"
PROFILES = {
    # warm-up steps, transfer stage-2 steps, from-scratch steps, eval interval, eval samples
    "full": {"warmup": [], "transfer": ["train.max_steps=300"], "scratch": ["train.max_steps=600"],
             "mma": [], "eval_samples": 120},
    "quick": {"warmup": ["warmup.max_steps=40", "data.max_val_samples=48", "eval.every=10"],
              "transfer": ["train.max_steps=60", "data.max_val_samples=48", "eval.every=10"],
              "scratch": ["train.max_steps=100", "data.max_val_samples=48", "eval.every=10"],
              "mma": ["train.max_steps=40", "data.max_val_samples=24"],
              "eval_samples": 48},
}
EVAL_DATA = ["demo:caption", "demo:vqa", "demo:sqa", "demo:text"]
NEEDS_BACKGROUND = "eval"  # the first step that reads a background step's output
# what the demo needs (demo-opt-l is for other recipes); demo-qformer-stage1 starts the from-scratch arm
DEMO_MODELS = ["demo-llama", "demo-blip2-opt-s", "demo-qformer-stage1"]
SCRATCH_QFORMER = "demo-qformer-stage1"  # the paper's TFS baseline: a stage-1 Q-Former, a random projector


@dataclass
class Step:
    """One pipeline step: its command line and the stage call that line makes.

    ``background`` steps need nothing from the chain: they run as a ``vltool`` subprocess beside
    it (as ``recipes/demo.sh`` does with ``&``), one thread each for the two jobs on 2 cores.
    """

    name: str
    argv: list[str]
    call: Callable[[Reporter], Any]
    background: bool = False


def commands(out: Path, quick: bool) -> list[Step]:
    """The pipeline: the same lines, in the same order, as ``recipes/demo.sh``."""

    p = PROFILES["quick" if quick else "full"]
    runs = out / "runs"
    warm, scratch, transfer = runs / "warmup", runs / "scratch", runs / "transfer"
    merged, mma, shared, merged_mma = runs / "merged", runs / "mma", runs / "mma-shared", runs / "merged-mma"
    eval_out, models = out / "eval" / "eval.json", [transfer, scratch, merged, mma, merged_mma]
    scratch_flags = {"from_scratch": True, "scratch_qformer": SCRATCH_QFORMER}

    def transfer_call(r: Reporter) -> Any:
        cfg = load_named_recipe(RECIPE, "transfer", p["transfer"], warm_artifact.flags_from_warmup(warm))
        return vpgtrans.run_transfer(cfg, transfer, from_warmup=warm, force=True, reporter=r)

    def eval_call(r: Reporter) -> Any:
        cfg = load_named_recipe(None, "eval", [], {"data.eval": EVAL_DATA, "eval.max_samples": p["eval_samples"]})
        return evaluate.run(cfg, [str(m) for m in models], out=eval_out, force=True, reporter=r)

    def mma_call(target: Path, flags: dict[str, Any]) -> Callable[[Reporter], Any]:
        return lambda r: tune_mma.run(load_named_recipe(MMA_RECIPE, "tune-mma", p["mma"], {"model": str(transfer), **flags}),
                                      target, force=True, reporter=r)

    return [
        Step("zoo build", ["zoo", "build", "--only", ",".join(DEMO_MODELS), *(["--quick"] if quick else [])],
             lambda r: build_summary(quick=quick, only=DEMO_MODELS, reporter=r)),
        Step("warmup", ["warmup", "-r", RECIPE, "--out", str(warm), "--force", *p["warmup"]],
             lambda r: vpgtrans.run_warmup(load_named_recipe(RECIPE, "warmup", p["warmup"], {}), warm, force=True, reporter=r)),
        Step("from scratch", ["transfer", "-r", RECIPE, "--from-scratch", "--qformer", SCRATCH_QFORMER,
                              "--out", str(scratch), "--force", *p["scratch"]],
             lambda r: vpgtrans.run_transfer(load_named_recipe(RECIPE, "transfer", p["scratch"], scratch_flags), scratch,
                                             force=True, reporter=r),
             background=True),
        Step("transfer", ["transfer", "-r", RECIPE, "--from-warmup", str(warm), "--out", str(transfer), "--force",
                          *p["transfer"]], transfer_call),
        Step("merge", ["merge", str(transfer), "--out", str(merged), "--force"],
             lambda r: merge.run(transfer, merged, modality="image", force=True, reporter=r)),
        Step("tune-mma", ["tune-mma", "-r", MMA_RECIPE, "--model", str(transfer), "--out", str(mma), "--force",
                          *p["mma"]], mma_call(mma, {})),
        Step("tune-mma, one shared adapter", ["tune-mma", "-r", MMA_RECIPE, "--model", str(transfer), "--no-router",
                                              "--out", str(shared), "--force", *p["mma"]],
             mma_call(shared, {"adapter.router": False})),
        Step("merge adapters", ["merge", str(mma), "--modality", "image", "--out", str(merged_mma), "--force"],
             lambda r: merge.run(mma, merged_mma, modality="image", force=True, reporter=r)),
        Step("eval", ["eval", *map(str, models), *[a for d in EVAL_DATA for a in ("--data", d)],
                      "--max-samples", str(p["eval_samples"]), "--out", str(eval_out), "--force"], eval_call),
    ]


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def max_logit_diff(unmerged: Path, merged: Path, n: int = 8) -> float:
    """Largest |logit| difference between vltool's model and the merged HF folder on val images."""
    import torch
    from PIL import Image
    from transformers import Blip2ForConditionalGeneration, Blip2Processor


    ours = load_predictor(str(unmerged)).blip2
    hf = Blip2ForConditionalGeneration.from_pretrained(str(merged)).eval()
    processor = Blip2Processor.from_pretrained(str(merged))
    samples = load_spec("demo:caption", "val")[:n]
    inputs = processor(images=[Image.open(s.image).convert("RGB") for s in samples],
                       text=[s.answer for s in samples], return_tensors="pt", padding=True)
    with torch.no_grad():
        return float((ours(**inputs).logits - hf(**inputs).logits).abs().max())


def mma_logit_diff(adapters: Path, merged: Path, n: int = 8) -> float:
    """Largest |logit| difference between the adapters model and its image-modality merge."""
    import torch


    ours, theirs = load_predictor(str(adapters)), load_predictor(str(merged))
    samples = [s for s in load_spec("demo:sqa", "val") if s.image is not None][:n]
    images = [ours.preprocess(s.image) for s in samples]
    batch = ours.collator.batch(images, [s.prompt for s in samples], [s.answer for s in samples])
    batch = normalise_batch(batch, scale_of(ours.preprocess))  # uint8 when normalised on the device
    real = batch["attention_mask"].bool()  # padded positions are never read, so never compared
    with torch.no_grad():
        return float((ours.model(batch).logits - theirs.model(batch).logits)[real].abs().max())


def mma_summary(runs: Path) -> dict[str, Any]:
    routed, shared = _manifest(runs / "mma")["metrics"], _manifest(runs / "mma-shared")["metrics"]
    return {
        "trainable_params": routed["trainable_params"], "total_params": routed["total_params"],
        "trainable_share_pct": 100.0 * routed["trainable_params"] / routed["total_params"],
        "sqa_accuracy_before": routed.get("before/demo:sqa/accuracy"),
        "sqa_accuracy_after": routed.get("after/demo:sqa/accuracy"),
        "sqa_accuracy_after_shared_adapter": shared.get("after/demo:sqa/accuracy"),
        "text_exact_match_before": routed.get("before/demo:text/exact_match"),
        "text_exact_match_after_router": routed.get("after/demo:text/exact_match"),
        "text_exact_match_after_shared_adapter": shared.get("after/demo:text/exact_match"),
        "image_samples": routed.get("image_samples"), "text_only_samples": routed.get("text_only_samples"),
    }


def summarise(out: Path, timings: dict[str, float]) -> dict[str, Any]:
    runs = out / "runs"
    warm, transfer, scratch = (_manifest(runs / n) for n in ("warmup", "transfer", "scratch"))
    curves = {}
    for metric, higher in (("val_loss", False), ("attr_acc", True)):
        t_curve = read_curve(runs / "transfer" / "metrics.jsonl", metric)
        s_curve = read_curve(runs / "scratch" / "metrics.jsonl", metric)
        curves[metric] = (t_curve, s_curve, speedup(s_curve, t_curve, metric, higher))
    # The headline is what the generated captions say (the paper's speed-up is on generated-caption
    # CIDEr, not on a loss); val loss also scores wording the image does not determine.
    main, loss = curves["attr_acc"][2], curves["val_loss"][2]
    evals = json.loads((out / "eval" / "eval.json").read_text())["metrics"]
    key = {name: str(runs / name) for name in ("transfer", "scratch", "merged", "mma", "merged-mma")}
    # each comparison loads its two models once
    vpg_diff = max_logit_diff(runs / "transfer", runs / "merged")
    mma_diff = mma_logit_diff(runs / "mma", runs / "merged-mma")
    report: dict[str, Any] = {
        "vpgtrans": {
            "metric": "attr_acc (colour, shape, size and position named right in generated captions of "
                      "held-out images)",
            "speedup": main.ratio, "steps_scratch": main.steps_scratch, "steps_transfer": main.steps_transfer,
            "best_scratch_attr_acc": main.best_scratch,
            "speedup_val_loss": loss.ratio, "steps_scratch_val_loss": loss.steps_scratch,
            "steps_transfer_val_loss": loss.steps_transfer, "best_scratch_val_loss": loss.best_scratch,
            "best_transfer_val_loss": loss.best_transfer,
            "warmup_steps": warm["metrics"].get("warmup_steps"),
            "converter_held_out_cos": warm["metrics"].get("converter_held_out_cos"),
            "converter_alignment": warm["metrics"].get("converter_alignment"),
            "after_warmup_attr_acc": warm["metrics"].get("final_attr_acc"),
            "transfer_final_attr_acc": transfer["metrics"].get("final_attr_acc"),
            "scratch_final_attr_acc": scratch["metrics"].get("final_attr_acc"),
        },
        "mma": mma_summary(runs),
        "merge": {"max_logit_diff": max(vpg_diff, mma_diff), "vpg_max_logit_diff": vpg_diff,
                  "mma_max_logit_diff": mma_diff},
        "eval": {spec: {Path(m).name: v for m, v in by.items()} for spec, by in evals.items()},
        "timings_s": timings,
    }
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for metric, (t_curve, s_curve, _) in curves.items():
        rep.plot_curves(plots / f"transfer_vs_scratch_{metric}.png",
                        {"VPGTrans (warm-up + fine-tune)": t_curve, "from scratch": s_curve}, metric,
                        f"demo-blip2-opt-s -> demo-llama: validation {metric}")
    measures = {"caption attribute acc.": ("demo:caption", "attr_acc"), "ScienceQA-style acc.": ("demo:sqa", "accuracy"),
                "text-only exact match": ("demo:text", "exact_match")}
    groups: dict[str, dict[str, float | None]] = {"after warm-up": {"caption attribute acc.":
                                                                    warm["metrics"].get("final_attr_acc")}}
    for name, path in key.items():
        groups[name] = {label: evals.get(spec, {}).get(path, {}).get(metric) for label, (spec, metric) in measures.items()}
    rep.plot_bars(plots / "quality_per_stage.png", groups, "% (after warm-up: val split; others: test split)",
                  "demo quality per stage: VPGTrans stages caption, MMA stages answer")
    return report


QUICK_NOTE = ("**Quick profile**: the world's LMs and source model are trained for a few dozen steps only, "
              "too few to learn to use their context, so this run checks that every stage runs end to end; "
              "run `vltool demo` without `--quick` to see the papers' effects.")


def markdown(report: dict[str, Any], cmds: list[Step], quick: bool = False) -> str:
    v, m, mm = report["vpgtrans"], report["merge"], report["mma"]
    fmt = lambda x: "n/a" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))
    ratio = lambda x: "never reached" if x is None else f"{x:.2f}x"
    lines = [
        "# vltool demo report", "",
        "A miniature of both papers on a procedural world (32x32 shapes, tiny OPT / LLaMA models) that runs",
        "on a laptop CPU. It shows the *mechanisms* working end to end; it cannot reproduce real-scale",
        "numbers, which need the real checkpoints (BLIP-2 OPT-2.7B, Vicuna-7B, ...) and GPUs.", "",
        *([QUICK_NOTE, ""] if quick else []),
        *findings(report),
        "## VPGTrans: demo-blip2-opt-s -> demo-llama (different tokenizer)", "",
        "| measure | this demo | paper |", "| --- | --- | --- |",
        f"| speed-up to the from-scratch arm's best caption attribute accuracy | {ratio(v['speedup'])} "
        f"({fmt(v['steps_transfer'])} vs {fmt(v['steps_scratch'])} steps) | {rep.PAPER['vpgtrans.speedup']} |",
        f"| same, on validation loss (also scores the captions' wording) | {ratio(v['speedup_val_loss'])} "
        f"({fmt(v['steps_transfer_val_loss'])} vs {fmt(v['steps_scratch_val_loss'])} steps; best "
        f"{fmt(v['best_transfer_val_loss'])} vs {fmt(v['best_scratch_val_loss'])}) | |",
        f"| attribute accuracy after the 1-epoch projector warm-up | {fmt(v['after_warmup_attr_acc'])}% | "
        f"{rep.PAPER['converter']} |",
        f"| word converter held-out cosine ({v['converter_alignment']} alignment) | "
        f"{fmt(v['converter_held_out_cos'])} | |",
        f"| final attribute accuracy: transfer / from scratch | {fmt(v['transfer_final_attr_acc'])}% / "
        f"{fmt(v['scratch_final_attr_acc'])}% | |", "",
        "Steps count every optimizer step the method paid for, the warm-up's included.", "",
        "## MMA (LaVIN): routed MM-Adapters on the transferred model", "",
        "| measure | this demo | paper |", "| --- | --- | --- |",
        f"| trainable / total parameters | {mm['trainable_params']:,} / {mm['total_params']:,} "
        f"({mm['trainable_share_pct']:.2f}%) | {rep.PAPER['mma.trainable_params']} |",
        f"| ScienceQA-style accuracy before -> after tune-mma | {fmt(mm['sqa_accuracy_before'])}% -> "
        f"{fmt(mm['sqa_accuracy_after'])}% (one shared adapter: {fmt(mm['sqa_accuracy_after_shared_adapter'])}%) "
        f"| {rep.PAPER['mma.sqa_accuracy_after']} |",
        f"| text-only exact match: before / router / one shared adapter | {fmt(mm['text_exact_match_before'])}% / "
        f"{fmt(mm['text_exact_match_after_router'])}% / {fmt(mm['text_exact_match_after_shared_adapter'])}% "
        f"| routing keeps text-only ability |", "",
        "## Merge", "",
        f"Max |logit| difference between vltool's model and the merged Hugging Face BLIP-2 folder: "
        f"{m['vpg_max_logit_diff']:.2e} (VPGTrans), {m['mma_max_logit_diff']:.2e} (MM-Adapters folded into "
        f"q/k/v and the FFN input, image modality); {rep.PAPER['merge']}.", "",
        "## Evaluation (test split)", "",
    ]
    for spec, by_model in report["eval"].items():
        names = list(by_model)
        metrics = sorted({k for v in by_model.values() for k in v if is_metric(k)})
        lines += [f"### {spec}", "", "| metric | " + " | ".join(names) + " |",
                  "| --- |" + " --- |" * len(names)]
        lines += [f"| {k} | " + " | ".join(fmt(by_model[n].get(k)) for n in names) + " |" for k in metrics]
        # fields that describe the scoring (ptb_tokenizer) are a sentence under the table, not a row
        notes = {describe(k, v) for values in by_model.values() for k, v in values.items() if not is_metric(k)}
        lines += ["", *sorted(notes)] if notes else []
        lines.append("")
    lines += ["## Plots", "", "![](plots/transfer_vs_scratch_attr_acc.png)",
              "![](plots/transfer_vs_scratch_val_loss.png)", "![](plots/quality_per_stage.png)", "",
              "## Commands run", "", "```bash"]
    lines += [command_line(step) for step in cmds]
    lines += ["```", "", "## Environment", "",
              "The world and every run are deterministic for one seed and one set of library versions; other "
              "versions can build a different world and give other numbers. This run: "
              + ", ".join(f"{k} {v}" for k, v in report.get("packages", {}).items()) + ".", "",
              "## Wall time (s)", ""]
    background = {step.name for step in cmds if step.background}
    lines += [f"- {k}: {v:.1f}" + (" (a background process, overlapping the steps after it)" if k in background
                                   else "") for k, v in report["timings_s"].items()]
    return "\n".join(lines) + "\n"


class _Background:
    """A pipeline step run as ``python -m vltool ...`` beside the main chain, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        import subprocess
        import sys

        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.handle = log.open("w")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
        self.proc = subprocess.Popen([sys.executable, "-m", "vltool", *argv], stdout=self.handle,
                                     stderr=subprocess.STDOUT, env=env)
        self.started = time.perf_counter()
        self.seconds: float | None = None

    def wait(self) -> float:
        rc = self.proc.wait()
        self.handle.close()
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.started
        if rc != 0:
            lines = [line for line in self.log.read_text().splitlines() if line.strip()]
            raise UserError(f"demo step '{self.name}' failed (exit {rc}): {lines[-1] if lines else 'no output'} "
                            f"(full log: {self.log})")
        return self.seconds

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.handle.close()


def command_line(step: Step) -> str:
    return "vltool " + " ".join(shlex.quote(a) for a in step.argv)


def run(out: Path, quick: bool = False, force: bool = False, reporter: Reporter | None = None,
        announce: Callable[[str], None] | None = None) -> Path:
    """Run every step, then write the report; ``announce`` shows each step's command line as it starts."""
    import torch

    reporter = reporter or NullReporter()
    announce = announce or (lambda text: None)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        ensure_writable(out, force)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["VLTOOL_DEMO_PROFILE"] = "quick" if quick else "full"  # which world the demo aliases mean
    cmds = commands(out, quick)
    timings: dict[str, float] = {}
    background: list[_Background] = []
    threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        for step in cmds:
            if step.name == NEEDS_BACKGROUND and background:
                announce(f"waiting for: {', '.join(b.name for b in background)}")
                for job in background:
                    timings[job.name] = job.wait()
                background.clear()
                torch.set_num_threads(threads)
            if step.background:
                job = _Background(step.name, step.argv, out / "logs" / f"{step.name.replace(' ', '-')}.log")
                background.append(job)
                torch.set_num_threads(1)  # the other core is the background job's
                announce(f"{step.name} (in the background, log {job.log}): {command_line(step)}")
                continue
            if background and all(job.proc.poll() is not None for job in background):
                torch.set_num_threads(threads)  # the background steps are done: both cores are ours again
            announce(f"{step.name}: {command_line(step)}")
            begun = time.perf_counter()
            step.call(reporter)
            timings[step.name] = time.perf_counter() - begun
    finally:
        for job in background:
            job.stop()
        torch.set_num_threads(threads)
    timings["total"] = time.perf_counter() - started
    report = summarise(out, timings)
    report["profile"] = "quick" if quick else "full"
    report["packages"] = package_versions()
    rep.write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report, cmds, quick))
    return out / "report.md"
