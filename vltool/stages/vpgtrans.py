"""VPGTrans stages: ``warmup`` (projector only, converter init) and ``transfer`` (then VPG tuning).

Stage 1 inherits the source VPG (ViT, ln_vision, Q-Former, query tokens), initialises the target
projector as g(proj_s(x)) with the fitted word converter g, and trains ONLY the projector at a
constant LR of ``warmup.lr_mult`` x the base LR. The VPG is frozen there, so its outputs are
computed once per image (the feature cache). Stage 2 trains Q-Former + query tokens + ln_vision +
projector with AdamW and a cosine schedule. ``from_scratch`` is the paper's baseline: the same
stage 2 from a stage-1 pre-trained Q-Former + query tokens + ln_vision (``scratch_qformer``, e.g.
a converted ``blip2_pretrained.pth``) and a random projector, on the source's frozen ViT;
``scratch_qformer: random`` (a fresh Q-Former and queries) is a separately named ablation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from vltool.artifacts.fingerprint import fingerprint_path
from vltool.config.schema import VPGTransRecipe
from vltool.data import feature_cache
from vltool.data.device_pixels import (
    NormalisedLoss,
    normalise,
    scale_of,
)
from vltool.data.feature_cache import cache_root
from vltool.data.mixture import bad_samples
from vltool.data.vl_collate import VLCollator
from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.meta_count import vpgtrans_table
from vltool.models.run_cost import blip2_config, cost_table
from vltool.stages.scaffold import StageRun
from vltool.stages.vpgtrans_setup import Setup, make_eval, prepare
from vltool.stages.warm_artifact import check_matches, with_warmup_data
from vltool.training.checkpoint import STATE_FILE, latest_checkpoint
from vltool.training.data_loader import resolve_workers
from vltool.training.disk_plan import run_bytes, warn_if_short
from vltool.training.gather import whole_tensors
from vltool.training.loop import plan_steps, train
from vltool.training.progress import Reporter
from vltool.training.tracking import continue_steps


def _finished(run_dir: Path) -> bool:
    """Whether this phase's newest checkpoint is the one written when it finished."""
    found = latest_checkpoint(run_dir)
    return found is not None and json.loads((found / STATE_FILE).read_text()).get("completed", False)


def _feature_table(setup: Setup, model, settings, accelerator, reporter: Reporter):
    """The warm-up feature cache on disk (see ``vltool.data.feature_cache``), or None when it cannot pay."""

    images = setup.train_set.images
    vpg = (model.vision_model, model.qformer, model.query_tokens)
    dtype = feature_cache.storage_dtype(next(model.vision_model.parameters()).dtype)
    preprocessing = setup.source.image_processor.to_dict()
    key = feature_cache.cache_key(feature_cache.module_fingerprint(vpg), preprocessing, images.images, dtype)
    total, _, _ = plan_steps(settings, len(setup.train_set), accelerator.num_processes)
    draws = total * settings.batch_size
    if feature_cache.find(key) is None and draws <= len(images):
        reporter.log(f"feature cache skipped: the warm-up draws {draws} samples from {len(images)} distinct images, "
                     "so no image is encoded twice without it (it pays with several captions per image, several "
                     "epochs, or on a rerun)")
        return None
    found = feature_cache.find(key) is not None
    model.eval()

    def encode(pixels: torch.Tensor) -> torch.Tensor:  # uint8 pixels are normalised on the device
        return vlm.query_output(model, normalise(pixels.to(accelerator.device), scale_of(images.preprocess)))

    with torch.no_grad():
        table = feature_cache.build(
            accelerator, key, len(images), encode,
            feature_cache.image_batches(images, 64, resolve_workers(settings.num_workers, setup.train_set)),
            dtype, {"images": len(images), "preprocessing": preprocessing},
        )
    reporter.log(f"feature cache {'reused' if found else 'built'}: {table.folder} "
                 f"({len(images)} images, {str(table.dtype).removeprefix('torch.')})")
    return table


def run_phase(setup: Setup, cfg: VPGTransRecipe, phase: str, run: StageRun) -> tuple[Any, list[dict], dict]:
    """Run one training phase (warmup, finetune, chat); returns (model, its metric rows, timing)."""
    model, reporter, accelerator = setup.model, run.reporter, run.accelerator
    setup.train_set = setup.phase_sets.get(phase, setup.train_set)  # this phase's own data when they differ
    run_dir = run.phase_dir(phase)
    resume_here = run.resume and latest_checkpoint(run_dir) is not None
    timing: dict[str, float] = {}
    features = None
    if phase == "warmup":
        vlm.set_trainable(model, vlm.WARMUP_PARTS)
        settings = cfg.train.model_copy(update={
            "lr": cfg.train.lr * cfg.warmup.lr_mult, "schedule": "constant", "warmup_steps": 0,
            "warmup_epochs": None, "epochs": cfg.warmup.epochs, "max_steps": cfg.warmup.max_steps,
            "eval_every": cfg.eval.every,
        })
        if setup.train_set.has_streams:
            reporter.log("feature cache skipped: wds: shards are streamed, not cached")
        elif cfg.warmup.feature_cache and not (resume_here and _finished(run_dir)):
            started = time.perf_counter()
            features = _feature_table(setup, model, settings, accelerator, reporter)
            if features is not None:
                timing["feature_cache_s"] = time.perf_counter() - started
        collate = VLCollator(setup.train_set, setup.layout, features)
    else:
        vlm.set_trainable(model, vlm.STAGE2_PARTS)
        settings = cfg.train.model_copy(update={"eval_every": cfg.eval.every})
        collate = VLCollator(setup.train_set, setup.layout)
    setup.train_set.use_features = features is not None
    setup.train_set.bad_features = getattr(features, "bad", set())
    setup.train_set.bad_log = run.root / "bad-images"
    model.to(accelerator.device)
    loss = NormalisedLoss(vlm.caption_loss, setup.train_pixels)  # uint8 pixels normalised on the device
    result = train(model, loss, setup.train_set, settings, collate_fn=collate, run_dir=run_dir,
                   eval_fn=make_eval(setup, cfg), reporter=reporter, resume=resume_here, accelerator=accelerator,
                   task=f"{phase} ({cfg.dst})")
    run.completed(result, phase, run_dir)
    train_rows = [r for r in result.history if "loss" in r]
    if train_rows:
        timing["step_s"] = result.wall_time_s / max(1, result.steps)
    timing["steps"] = result.steps
    timing["wall_s"] = result.wall_time_s
    bad = bad_samples(setup.train_set.bad_log)
    if bad:
        timing["bad_samples_skipped"] = len(bad)
        reporter.log(f"{phase}: skipped {len(bad)} bad images/samples while training (e.g. {bad[0]})")
    return result.model, result.history, timing


def save_vpg(setup: Setup, model, cfg: VPGTransRecipe, run: StageRun, rows: list[dict],
             metrics: dict[str, Any]) -> Path:
    """Write the vpg artifact: trained tensors + configs + references to the frozen ViT and LLM."""
    # Model names -> artifact names. Gathered whole first: under FSDP / ZeRO-3 that is a
    # collective every process takes part in (vltool.training.gather).
    renames = {"qformer.": "qformer.", "vision_model.post_layernorm.": "ln_vision.",
               "language_projection.": "projector.", "query_tokens": "query_tokens"}
    state = whole_tensors(run.accelerator, model, lambda name: name.startswith(tuple(renames)))
    with run.artifact("vpg", metrics) as writer:
        if writer is None:  # not the main process
            return run.out
        tensors = {}
        for name, value in state.items():
            prefix = next(p for p in renames if name.startswith(p))
            tensors[renames[prefix] + name[len(prefix):]] = value.detach()
        writer.save_tensors("vpg.safetensors", tensors)
        writer.save_json("configs/qformer.json", model.qformer.config.to_dict())
        writer.save_json("configs/vision.json", model.vision_model.config.to_dict())
        writer.save_json("configs/vpg.json", {"num_query_tokens": model.query_tokens.shape[1],
                                              "qformer_width": model.qformer.config.hidden_size,
                                              "llm_width": model.language_projection.out_features,
                                              "image_token_index": model.config.image_token_index})
        setup.source.image_processor.save_pretrained(str(writer.path / "processor"))
        (writer.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        writer.add_input("vision", setup.source.vision_ref["source"], setup.source.vision_ref["fingerprint"],
                         what="frozen ViT (from the source BLIP-2)")
        writer.add_input("llm", str(Path(setup.llm_path).resolve()), fingerprint_path(setup.llm_path),
                         what="frozen target LLM", alias=cfg.dst)
        writer.add_input("src", setup.source.origin, fingerprint_path(Path(setup.source.origin)), what="VPG source")
        scratch = getattr(setup.source, "scratch", None) or {}
        if scratch.get("scratch_qformer_path"):
            path = Path(scratch["scratch_qformer_path"])
            writer.add_input("scratch_qformer", str(path.resolve()), fingerprint_path(path),
                             what="stage-1 Q-Former the from-scratch baseline started from",
                             alias=scratch["scratch_qformer"])
    return run.out


def _offset(rows: list[dict], offset: int, phase: str) -> list[dict]:
    return [{**r, "step": r["step"] + offset, "phase": phase} for r in rows]


def _final_eval(rows: list[dict]) -> dict[str, float]:
    evals = [r["eval"] for r in rows if "eval" in r]
    return {f"final_{k}": v for k, v in evals[-1].items()} if evals else {}


def _warn_space(setup: Setup, cfg: VPGTransRecipe, out: Path, reporter: Reporter, phases: tuple[str, ...]) -> None:
    """One warning line before training when --out's filesystem (or the feature cache's) lacks room
    for the checkpoints kept, the artifact and the cache (``training.disk_plan``, #23)."""

    model = setup.model
    table = {"qformer": model.qformer, "ln_vision": model.vision_model.post_layernorm,
             "projector": model.language_projection}

    def count(parts: tuple[str, ...]) -> int:
        return sum(model.query_tokens.numel() if p == "query_tokens" else sum(x.numel() for x in table[p].parameters())
                   for p in parts)

    phase_params = [count(vlm.WARMUP_PARTS if phase == "warmup" else vlm.STAGE2_PARTS) for phase in phases]
    writes = run_bytes(phase_params, cfg.train.keep_checkpoints, count(vlm.STAGE2_PARTS))
    warm_set = setup.phase_sets.get("warmup", setup.train_set)
    cached = "warmup" in phases and cfg.warmup.feature_cache and not warm_set.has_streams
    cache_bytes = len(warm_set.images) * model.query_tokens.shape[1] * model.qformer.config.hidden_size * 2
    warn_if_short(reporter, out, writes, cache_root(), cache_bytes if cached else 0)


def run_warmup(cfg: VPGTransRecipe, out: Path, force: bool = False, resume: bool = False,
               reporter: Reporter | None = None) -> Path:
    """Stage 1 only; writes a vpg artifact that ``transfer --from-warmup`` continues from."""
    with StageRun(cfg, out, force, resume, reporter) as run:
        setup = prepare(cfg, run.reporter, "converter" if cfg.converter.enabled else "random", phases=("warmup",))
        _warn_space(setup, cfg, out, run.reporter, ("warmup",))
        model, rows, timing = run_phase(setup, cfg, "warmup", run)
        metrics = {**setup.metrics, **_final_eval(rows), "warmup_steps": timing["steps"],
                   "warmup_step_s": timing.get("step_s"), "feature_cache_s": timing.get("feature_cache_s"),
                   "steps_total": timing["steps"], "data_bad_samples_skipped": timing.get("bad_samples_skipped", 0)}
        return save_vpg(setup, model, cfg, run, _offset(rows, 0, "warmup"), metrics)


def run_transfer(cfg: VPGTransRecipe, out: Path, from_warmup: Path | None = None, force: bool = False,
                 resume: bool = False, reporter: Reporter | None = None) -> Path:
    """Warm-up (unless continuing from one, or from scratch), then stage-2 VPG fine-tuning."""
    warm: dict[str, Any] | None = None
    if from_warmup is not None:
        if cfg.from_scratch:
            raise UserError("--from-warmup and --from-scratch exclude each other")
        warm = check_matches(cfg, Path(from_warmup))
        cfg = with_warmup_data(cfg, Path(from_warmup), warm)
    with StageRun(cfg, out, force, resume, reporter) as run:
        rows: list[dict] = []
        metrics: dict[str, Any] = {}
        offset = 0
        if warm is not None:
            setup = prepare(cfg, run.reporter, "warmup", Path(from_warmup), phases=("finetune",))
            _warn_space(setup, cfg, out, run.reporter, ("finetune",))
            offset = int(warm["metrics"].get("steps_total", 0))
            continue_steps(run.accelerator, offset)  # trackers count on from the warm-up's steps, as metrics.jsonl
            rows = [json.loads(line) for line in (Path(from_warmup) / "metrics.jsonl").read_text().splitlines()]
            metrics.update({k: v for k, v in warm["metrics"].items() if k.startswith(("converter_", "warmup_"))})
        elif cfg.from_scratch:
            setup = prepare(cfg, run.reporter, "scratch", phases=("finetune",))
            _warn_space(setup, cfg, out, run.reporter, ("finetune",))
        else:
            setup = prepare(cfg, run.reporter, "converter" if cfg.converter.enabled else "random")
            _warn_space(setup, cfg, out, run.reporter, ("warmup", "finetune"))
            setup.model, warm_rows, timing = run_phase(setup, cfg, "warmup", run)
            rows = _offset(warm_rows, 0, "warmup")
            offset = timing["steps"]
            metrics.update({"warmup_steps": timing["steps"], "warmup_step_s": timing.get("step_s")})
        metrics.update(setup.metrics)
        model, stage_rows, timing = run_phase(setup, cfg, "finetune", run)
        rows += _offset(stage_rows, offset, "finetune")
        metrics.update({**_final_eval(rows), "finetune_steps": timing["steps"],
                        "steps_total": offset + timing["steps"], "from_scratch": cfg.from_scratch,
                        "finetune_step_s": timing.get("step_s"),
                        "data_bad_samples_skipped": timing.get("bad_samples_skipped", 0)})
        return save_vpg(setup, model, cfg, run, rows, metrics)


def dry_run(cfg: VPGTransRecipe) -> dict[str, Any]:
    """Parameters and memory per stage, then what the run costs (``models.run_cost``) beside the
    from-scratch baseline, in ``report["tables"]``."""

    report = vpgtrans_table(cfg)
    cost = cost_table(cfg, blip2_config(cfg))
    report["tables"] = [*report.get("tables", []), cost]
    report["cost"] = cost["cost"]
    return report
