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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.artifacts import read_artifact
from vltool.artifacts.fingerprint import fingerprint_path
from vltool.config.schema import VPGTransRecipe
from vltool.data import caption_text
from vltool.data.augment import Blip2TrainTransform
from vltool.data.device_pixels import (
    NormalisedLoss,
    PixelScale,
    normalise,
    normalise_batch,
    pixels_on_device,
    scale_of,
)
from vltool.data.mixture import MixedVLData, Source, bad_samples
from vltool.data.sample_table import answers
from vltool.data.training_data import read_samples, train_sources
from vltool.data.vl_collate import VLCollator
from vltool.data.vl_dataset import VLDataset, image_preprocessor
from vltool.data.vqav2 import with_question_text
from vltool.data.wds import first_captions
from vltool.errors import UserError
from vltool.models import vlm
from vltool.models.word_converter import align, fit_converter, merge_projector
from vltool.sources.vpg_source import VPGSource, load_source
from vltool.stages.scaffold import StageRun
from vltool.training.checkpoint import STATE_FILE, latest_checkpoint
from vltool.training.data_loader import iterate, make_loader, resolve_workers
from vltool.training.gather import whole_tensors
from vltool.training.loop import train
from vltool.training.progress import Reporter
from vltool.training.tracking import continue_steps


@dataclass
class Setup:
    """Everything both phases share: the assembled model, data, layout and provenance."""

    model: Any
    source: VPGSource
    tokenizer: Any
    llm_path: Path
    layout: vlm.VLTextLayout
    train_set: MixedVLData
    val_set: VLDataset | None
    metrics: dict[str, float]
    val_by_spec: dict[str, list] = field(default_factory=dict)  # the val samples, per spec, for scoring
    # uint8 pixels -> the normalised floats, on the device (None: the workers ship float32 pixels)
    train_pixels: PixelScale | None = None
    val_pixels: PixelScale | None = None
    # each phase's training data when they differ (warmup.data: COCO + SBU; data.train: the stage-2 mix)
    phase_sets: dict[str, MixedVLData] = field(default_factory=dict)


def _train_sources(cfg: VPGTransRecipe, specs: list[str] | None = None) -> tuple[list[Source], dict]:
    """The training mixture's sources (``specs``, default ``data.train``): ``vltool.data.training_data``,
    the one path tune-mma shares (#24)."""
    return train_sources(cfg.data.train if specs is None else specs, cfg.data.images, cfg.data.skip_bad_images,
                         cfg.data.max_train_samples)


def _load_dtype(cfg: VPGTransRecipe) -> torch.dtype:
    """The dtype the frozen target LLM is read in: the one the training loop stores it in
    (``train.frozen_dtype`` against this run's mixed precision), so a bf16 run never holds an fp32
    copy of a 7B LLM in host memory (``sources.open_model``)."""
    from vltool.models.memory import frozen_load_dtype

    return frozen_load_dtype(cfg.train.frozen_dtype)


def _fresh_parts(source: VPGSource, llm_width: int, seed: int) -> tuple[nn.Module, torch.Tensor, nn.Linear]:
    """A new Q-Former of the source's shape, queries ~ N(0, 0.02) as LAVIS, a random projector.

    The ``--qformer random`` ablation: NOT the paper's from-scratch baseline (see ``_scratch_parts``).
    """
    from transformers import Blip2QFormerModel

    torch.manual_seed(seed)
    config = source.qformer.config.__class__(**{**source.qformer.config.to_dict(), "initializer_range": 0.02})
    qformer = Blip2QFormerModel(config)
    queries = torch.randn(source.query_tokens.shape, generator=torch.Generator().manual_seed(seed)) * 0.02
    return qformer, queries, nn.Linear(config.hidden_size, llm_width)


def _scratch_parts(cfg: VPGTransRecipe, source: VPGSource, llm_width: int,
                   reporter: Reporter) -> tuple[nn.Module, torch.Tensor, nn.Linear, dict[str, Any]]:
    """The training-from-scratch start: (Q-Former, queries, projector, provenance).

    The paper's TFS (PAPERS.md 1): a Q-Former with BLIP-2's stage-1 pre-training (its query path,
    query tokens and ln_vision; ``cfg.scratch_qformer`` names it) and a random projector, on the
    source's frozen ViT. ``scratch_qformer: random`` is the random-Q-Former ablation instead.
    """
    from vltool.sources.stage1 import RANDOM, load_stage1

    spec = cfg.scratch_qformer  # set: the recipe schema refuses from_scratch without it
    if spec == RANDOM:
        qformer, queries, projector = _fresh_parts(source, llm_width, cfg.train.seed)
        return qformer, queries, projector, {"scratch_qformer": RANDOM}
    start = load_stage1(spec, source.vision_model)
    source.vision_model.post_layernorm.load_state_dict(start.ln_vision)
    torch.manual_seed(cfg.train.seed)
    projector = nn.Linear(start.qformer.config.hidden_size, llm_width)
    reporter.log(f"from scratch: stage-1 Q-Former, query tokens and ln_vision from {start.path}; random projector")
    return start.qformer, start.query_tokens, projector, {"scratch_qformer": spec,
                                                         "scratch_qformer_path": str(start.path)}


def _converter_init(cfg: VPGTransRecipe, source: VPGSource, tokenizer, lm, captions: list[str]):
    """Fit the word converter and merge it with the source projector."""
    from vltool.sources.hf_blip2 import input_word_embeddings

    # both sides through OPT's project_in where there is one, as the official code maps embeddings
    data = align(captions, source.tokenizer, tokenizer, source.lm_embeddings, input_word_embeddings(lm))
    same_family = data.mode == "token ids"
    epochs = cfg.converter.epochs or (5 if same_family else 8)
    from accelerate import PartialState

    # on the accelerator when there is one (the process's own under `accelerate launch`): a
    # COCO+SBU-scale fit runs for hours on a CPU; every process fits the same g from the same seed
    device = PartialState().device
    g, report = fit_converter(data, cfg.converter.method, cfg.converter.lr, epochs, cfg.converter.batch_captions,
                              cfg.converter.ridge, cfg.converter.held_out, cfg.converter.seed, device=device)
    report["converter_device"] = device.type
    report["converter_alignment"] = data.mode
    return merge_projector(g, source.projector), g, report


def warmup_specs(cfg: VPGTransRecipe) -> list[str]:
    """The warm-up's training data: ``warmup.data`` (the paper: COCO + SBU) or, when unset, ``data.train``."""
    return cfg.warmup.data or cfg.data.train


def prepare(cfg: VPGTransRecipe, reporter: Reporter, init: str, warm_artifact: Path | None = None,
            phases: tuple[str, ...] = ("warmup", "finetune")) -> Setup:
    """Load source, target and data; assemble the target model with the chosen projector init.

    ``init``: "converter" (VPGTrans), "random" (the no-converter ablation), "scratch" (baseline)
    or "warmup" (continue from ``warm_artifact``). ``phases``: the training phases that will run;
    each reads its own data (``warmup_specs`` and ``data.train``), read once when they are the same.
    """
    from vltool.sources.open_model import BLIP2, open_model, open_target

    # the target with the special-token and <image> rules applied (sources.open_model); a warm-up
    # artifact brings its own VPG and target, checked as every vpg artifact is
    if init == "warmup":
        opened = open_model(str(warm_artifact), "source", "--from-warmup", dtype=_load_dtype(cfg), kinds=(BLIP2,))
        source = opened.vpg
    else:
        source = load_source(cfg.src)
        opened = open_target(cfg.dst, "--dst", dtype=_load_dtype(cfg))
    lm, tokenizer, llm_path = opened.language_model, opened.tokenizer, opened.llm_path
    image_token = opened.image_token_index
    stage_specs = cfg.data.train if "finetune" in phases else warmup_specs(cfg)
    sources, train_report = _train_sources(cfg, stage_specs)
    warm_sources = sources
    if "warmup" in phases and warmup_specs(cfg) != stage_specs:
        warm_sources, warm_report = _train_sources(cfg, warmup_specs(cfg))
        train_report = {k: train_report.get(k, 0) + warm_report.get(k, 0) for k in {*train_report, *warm_report}}
    # the converter fits on the warm-up's captions through the caption processor, as the official
    # tools/linear_proj/train_linear_proj_opt_and_llama.py (VPGTrans@32e885c) reads COCO + SBU through
    # its pre_caption (blip_caption's steps without the 50-word cut)
    # their answers only: a SampleTable gives its answer column without building each Sample (#23)
    train_answers = [a for src in warm_sources for a in answers(src.samples or [])]
    text = caption_text.processor(cfg.text_processor)
    # each validation spec read once, at most data.max_val_samples samples each; scored per spec
    val_by_spec = {spec: with_question_text(read_samples([spec], "val", cfg.data.images, cfg.data.skip_bad_images,
                                                         cfg.data.max_val_samples)[0],
                                            cfg.eval.question_text) for spec in cfg.data.val}
    if cfg.text_processor != "none":  # the teacher-forced validation loss reads the trained text too
        val_by_spec = {spec: [replace(s, answer=text(s.answer)) for s in samples] for spec, samples in val_by_spec.items()}
    val_samples = [s for samples in val_by_spec.values() for s in samples] or None
    metrics: dict[str, float] = {**{f"data_{k}": float(v) for k, v in train_report.items()}}
    width = lm.config.hidden_size
    embed_width = lm.get_input_embeddings().weight.shape[1]
    if embed_width != width:  # OPT-350M: word_embed_proj_dim 512, project_in to 1024
        raise UserError(f"--dst {cfg.dst}: its word embeddings are {embed_width} wide and project_in maps them to "
                        f"{width}; transformers' Blip2ForConditionalGeneration writes {width}-wide visual tokens "
                        f"among the {embed_width}-wide embeddings, so such an OPT cannot be a BLIP-2 target")
    if init == "scratch":
        qformer, queries, projector, provenance = _scratch_parts(cfg, source, width, reporter)
        source.scratch = provenance
    else:
        qformer, queries = source.qformer, source.query_tokens
        if init == "warmup":
            projector = source.projector
        elif init == "random":
            torch.manual_seed(cfg.train.seed)
            projector = nn.Linear(source.projector.in_features, width)
        else:
            captions = [text(a) for a in train_answers] or [text(c) for c in first_captions(
                [p for src in warm_sources for p in src.shards or []])]
            projector, _, report = _converter_init(cfg, source, tokenizer, lm, captions)
            metrics.update(report)
            reporter.log(f"word converter ({report['converter_alignment']}, on {report['converter_device']}): fitted on "
                         f"all {int(report['converter_pairs'])} pairs (cosine {report['converter_train_cos']:.3f}); "
                         f"a separate fit without {int(report['converter_held_out_pairs'])} held-out pairs scores "
                         f"{report['converter_held_out_cos']:.3f} on them; "
                         f"{int(report['converter_matched'])}/{int(report['converter_candidates'])} aligned")
    if projector.out_features != width:
        raise UserError(f"the projector outputs {projector.out_features} features but the target LLM "
                        f"{cfg.dst} is {width} wide")
    model = vlm.assemble(source.vision_model, qformer, queries, projector, lm, image_token)
    # data.device_normalise: workers ship uint8, normalised on the device (vltool.data.device_pixels)
    preprocess = image_preprocessor(source.image_processor, uint8=pixels_on_device(cfg.data.device_normalise))
    layout = vlm.VLTextLayout(tokenizer, queries.shape[1], image_token, cfg.max_text_tokens,
                              end_of_text=cfg.end_of_text, prompt=cfg.prompt)
    metrics["end_of_text_id"] = float(layout.stop_id) if layout.stop_id is not None else -1.0
    augment = None
    if cfg.data.augment == "blip2":
        augment = Blip2TrainTransform(source.image_processor, normalise=scale_of(preprocess) is None)
    train_pixels = augment.pixel_scale if augment is not None and not augment.normalise else scale_of(preprocess)
    train_set = MixedVLData(sources, preprocess, augment, skip_bad=cfg.data.skip_bad_images, caption_text=text)
    phase_sets = {}
    if warm_sources is not sources:
        phase_sets = {"warmup": MixedVLData(warm_sources, preprocess, augment, skip_bad=cfg.data.skip_bad_images,
                                            caption_text=text), "finetune": train_set}
    val_set = VLDataset(val_samples, preprocess) if val_samples else None
    return Setup(model, source, tokenizer, llm_path, layout, train_set, val_set, metrics, val_by_spec,
                 train_pixels, scale_of(preprocess), phase_sets)


def make_eval(setup: Setup, cfg: VPGTransRecipe):
    """Validation: teacher-forced loss, then each validation set generated and scored exactly as
    ``vltool eval`` does it (same predictor, same metrics), so ``metrics.jsonl`` agrees with it.

    With several validation specs, each is scored on its own (``SPEC/metric``), at most
    ``data.max_val_samples`` samples each.
    """
    if setup.val_set is None:
        return None
    from vltool.eval.dataset_eval import evaluate_dataset
    from vltool.eval.predictors import GenerationSettings, Predictor

    samples = setup.val_set.samples
    collate = VLCollator(setup.val_set, setup.layout)
    by_spec = setup.val_by_spec
    # Images decode in DataLoader workers, as in training (train.num_workers), for the loss pass
    # and for generation alike: the accelerator does not wait on the main process's decoding.
    workers = resolve_workers(cfg.train.num_workers, setup.val_set)
    generation = GenerationSettings(cfg.eval.batch_size, cfg.eval.max_new_tokens, num_beams=cfg.eval.num_beams,
                                    min_new_tokens=cfg.eval.min_new_tokens, prompt=cfg.eval.prompt, workers=workers,
                                    length_penalty=cfg.eval.length_penalty, temperature=cfg.eval.temperature,
                                    top_p=cfg.eval.top_p, seed=cfg.eval.seed)
    preprocess = setup.val_set.images.preprocess
    size = cfg.eval.batch_size
    order = [list(range(start, min(start + size, len(samples)))) for start in range(0, len(samples), size)]

    def evaluate(model, step: int) -> dict[str, float]:
        device = next(model.parameters()).device
        losses = []
        loader = make_loader(setup.val_set, order, collate, workers if len(order) > 1 else 0)
        for batch in iterate(loader):
            rows = len(batch["input_ids"])
            batch = normalise_batch({k: v.to(device) for k, v in batch.items()}, setup.val_pixels)
            losses.append(float(vlm.caption_loss(model, batch)) * rows)  # LM head on caption tokens only
        metrics = {"val_loss": sum(losses) / len(samples)}
        predictor = Predictor(f"step {step}", model.language_model, setup.tokenizer, model, preprocess, setup.layout)
        for spec, spec_samples in by_spec.items():
            scores = evaluate_dataset(predictor, spec, spec_samples, generation, meteor=False).metrics
            metrics.update(scores if len(by_spec) == 1 else {f"{spec}/{k}": v for k, v in scores.items()})
        return metrics

    return evaluate


def _finished(run_dir: Path) -> bool:
    """Whether this phase's newest checkpoint is the one written when it finished."""
    found = latest_checkpoint(run_dir)
    return found is not None and json.loads((found / STATE_FILE).read_text()).get("completed", False)


def _feature_table(setup: Setup, model, settings, accelerator, reporter: Reporter):
    """The warm-up feature cache on disk (see ``vltool.data.feature_cache``), or None when it cannot pay."""
    from vltool.data import feature_cache
    from vltool.training.loop import plan_steps

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
    from vltool.data.feature_cache import cache_root
    from vltool.training.disk_plan import run_bytes, warn_if_short

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


def check_matches(cfg: VPGTransRecipe, warm: Path) -> dict[str, Any]:
    """The manifest of the vpg artifact ``warm`` (read once, before the run folder is claimed), after
    refusing ``--dst`` / ``--src`` that differ from what it was trained for.

    Its projector maps into its own LLM's embedding space; continuing on another LLM would train
    on the artifact's LLM while the manifest names the other one. Its files are hashed once, later,
    when ``prepare`` opens it.
    """
    from vltool.sources.resolve import resolve_target

    manifest = read_artifact(warm, kinds=("vpg",), verify=False).manifest
    recipe = manifest.get("recipe", {})
    for key, flag in (("dst", "--dst"), ("src", "--src")):
        theirs, ours = recipe.get(key), getattr(cfg, key)
        if not theirs or not ours or theirs == ours:
            continue
        if key == "dst":
            try:
                if resolve_target(ours).path.resolve() == resolve_target(theirs).path.resolve():
                    continue
            except UserError:
                pass
        raise UserError(f"{flag} {ours} does not match the warm-up artifact {warm}, which was trained with "
                        f"{key} {theirs}; drop {flag} or pass {theirs}")
    return manifest


def flags_from_warmup(path: Path) -> dict[str, Any]:
    """Recipe values a warm-up artifact fixes (src, dst, the caption prompt and end of text), so
    ``--from-warmup`` needs no repeats and stage 2 trains the layout the warm-up did.

    Not its data: stage 2 trains on the recipe's own mix (the paper: COCO + VG + LAION-COCO after a
    COCO + SBU warm-up); ``with_warmup_data`` fills in only what the recipe leaves empty."""
    recipe = read_artifact(Path(path), kinds=("vpg",), verify=False).manifest.get("recipe", {})
    return {"src": recipe.get("src"), "dst": recipe.get("dst"), "end_of_text": recipe.get("end_of_text"),
            "prompt": recipe.get("prompt")}


def with_warmup_data(cfg: VPGTransRecipe, path: Path, manifest: dict[str, Any] | None = None) -> VPGTransRecipe:
    """``cfg`` with the data keys it leaves empty taken from the warm-up artifact's recipe.

    Stage-2 data the recipe or ``--data`` gives are kept as they are. Without any, stage 2 continues
    on the warm-up recipe's stage-2 data (``data.train``), else on the warm-up's own data; validation
    data, the image root and the sample caps likewise only when unset.
    """
    if manifest is None:
        manifest = read_artifact(Path(path), kinds=("vpg",), verify=False).manifest
    recipe = manifest.get("recipe", {})
    theirs = recipe.get("data", {})
    update: dict[str, Any] = {}
    if not cfg.data.train:
        update["train"] = theirs.get("train") or recipe.get("warmup", {}).get("data") or []
        if cfg.data.max_train_samples is None and theirs.get("max_train_samples"):
            update["max_train_samples"] = theirs["max_train_samples"]
    if not cfg.data.val and theirs.get("val"):
        update["val"] = theirs["val"]
        if cfg.data.max_val_samples is None and theirs.get("max_val_samples"):
            update["max_val_samples"] = theirs["max_val_samples"]
    if cfg.data.images is None and theirs.get("images"):
        update["images"] = theirs["images"]
    return cfg.model_copy(update={"data": cfg.data.model_copy(update=update)}) if update else cfg


def dry_run(cfg: VPGTransRecipe) -> dict[str, Any]:
    """Parameters and memory per stage, then what the run costs (``models.run_cost``) beside the
    from-scratch baseline, in ``report["tables"]``."""
    from vltool.models.meta_count import vpgtrans_table
    from vltool.models.run_cost import blip2_config, cost_table

    report = vpgtrans_table(cfg)
    cost = cost_table(cfg, blip2_config(cfg))
    report["tables"] = [*report.get("tables", []), cost]
    report["cost"] = cost["cost"]
    return report
