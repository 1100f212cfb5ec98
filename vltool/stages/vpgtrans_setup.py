"""What both VPGTrans phases share, assembled once: source VPG, target LLM, data, text layout.

``prepare`` loads the source (or a vpg artifact, or a stage-1 Q-Former for the from-scratch
baseline) and the target through ``sources.open_model``, fits the word converter when the
projector starts from it, and builds the training / validation sets and the caption layout;
``make_eval`` is the validation both phases run. The training itself is ``stages.vpgtrans``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vltool.config.schema import VPGTransRecipe
from vltool.data import caption_text
from vltool.data.augment import Blip2TrainTransform
from vltool.data.device_pixels import (
    PixelScale,
    normalise_batch,
    pixels_on_device,
    scale_of,
)
from vltool.data.mixture import MixedVLData, Source
from vltool.data.sample_table import answers
from vltool.data.training_data import read_samples, train_sources
from vltool.data.vl_collate import VLCollator
from vltool.data.vl_dataset import VLDataset, image_preprocessor
from vltool.data.vqav2 import with_question_text
from vltool.data.wds import first_captions
from vltool.errors import UserError
from vltool.eval.dataset_eval import evaluate_dataset
from vltool.eval.predictors import GenerationSettings, Predictor
from vltool.models import vlm
from vltool.models.memory import frozen_load_dtype
from vltool.models.word_converter import align, fit_converter, merge_projector
from vltool.sources.hf_blip2 import input_word_embeddings
from vltool.sources.open_model import BLIP2, open_model, open_target
from vltool.sources.stage1 import RANDOM, load_stage1
from vltool.sources.vpg_source import VPGSource, load_source
from vltool.training.data_loader import iterate, make_loader, resolve_workers
from vltool.training.progress import Reporter


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
