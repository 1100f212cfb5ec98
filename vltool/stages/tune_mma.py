"""``vltool tune-mma``: LaVIN's Mixture-of-Modality Adaptation on a frozen LLM and VPG.

Text-only and image-text samples are shuffled into one stream (Mixture-of-Modality Training);
only the MM-Adapters, their routers, the modality embedding and the visual projection train,
with the loss on answer tokens. Output: an ``adapters`` artifact holding just those tensors and
a JSON config that names and fingerprints the base model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from vltool.config.schema import MMARecipe
from vltool.data.device_pixels import NormalisedLoss, pixels_on_device, scale_of
from vltool.data.mixture import MixedVLData, bad_samples
from vltool.data.training_data import modality_counts, one_stream, read_samples, train_sources
from vltool.data.vl_dataset import image_preprocessor
from vltool.errors import UserError
from vltool.eval.dataset_eval import evaluate_dataset
from vltool.eval.predictors import GenerationSettings, MMAPredictor
from vltool.models.memory import frozen_load_dtype
from vltool.models.mma import loading
from vltool.models.mma.count import lavin_table
from vltool.models.mma.layout import MMACollator, MMADatasetCollate
from vltool.models.mma.mma_model import is_trainable_name, mma_loss
from vltool.stages.scaffold import StageRun
from vltool.training.data_loader import resolve_workers
from vltool.training.disk_plan import run_bytes, trainable_count, warn_if_short
from vltool.training.gather import whole_tensors
from vltool.training.loop import train
from vltool.training.progress import Reporter


def run(cfg: MMARecipe, out: Path, force: bool = False, resume: bool = False,
        reporter: Reporter | None = None) -> Path:
    """Train the adapters of ``cfg`` and write an ``adapters`` artifact at ``out`` (scaffold: ``StageRun``)."""
    if not cfg.data.train:
        raise UserError("no training data: pass --data SPEC (e.g. --data demo:sqa --data demo:text)")
    with StageRun(cfg, out, force, resume, reporter) as run:
        return _tune(cfg, run)


def _tune(cfg: MMARecipe, run: StageRun) -> Path:
    """What is tune-mma's own: the base with MM-Adapters, the mixed stream, the adapters artifact."""
    out, reporter, accelerator, run_dir = run.out, run.reporter, run.accelerator, run.root
    # the frozen towers read straight in the dtype training stores them in (models.memory)
    base = loading.load_base(cfg.model, cfg.front_end, cfg.vision, frozen_load_dtype(cfg.train.frozen_dtype))
    tokenizer, processor = base.tokenizer, base.processor
    torch.manual_seed(cfg.train.seed)  # the adapters' xavier init: same seed, same run (LaVIN's runs were not)
    model = loading.build(base, cfg.adapter.model_dump(), cfg.adapter.placement, cfg.adapter.vision,
                          cfg.visual_tokens)
    loading.set_trainable(model)
    # data.device_normalise: workers ship uint8, normalised on the device (vltool.data.device_pixels)
    preprocess = image_preprocessor(processor, uint8=pixels_on_device(cfg.data.device_normalise))
    # the training data path transfer has (#24): SPEC@RATIO mixes, wds: shards, bad samples skipped while
    # training; specs without ratios are one shuffled stream, LaVIN's Mixture-of-Modality Training
    sources, data_report = train_sources(cfg.data.train, cfg.data.images, cfg.data.skip_bad_images,
                                         cfg.data.max_train_samples, example="demo:sqa")
    val = {spec: read_samples([spec], "val", cfg.data.images, cfg.data.skip_bad_images, cfg.data.max_val_samples)[0]
           for spec in cfg.data.val}
    collator = MMACollator(tokenizer, model.front_end.visual_tokens, cfg.max_length)
    dataset = MixedVLData(one_stream(sources), preprocess, skip_bad=cfg.data.skip_bad_images)
    dataset.bad_log = run_dir / "bad-images"  # the workers note skipped samples here; counted below
    model.to(accelerator.device)

    # Validation images decode in DataLoader workers, as training's do (train.num_workers).
    generation = GenerationSettings(cfg.eval.batch_size, cfg.eval.max_new_tokens, cfg.eval.min_new_tokens,
                                    cfg.eval.num_beams, prompt=cfg.eval.prompt,
                                    workers=resolve_workers(cfg.train.num_workers, dataset),
                                    length_penalty=cfg.eval.length_penalty, temperature=cfg.eval.temperature,
                                    top_p=cfg.eval.top_p, seed=cfg.eval.seed)

    def eval_all(m, step: int) -> dict[str, float]:
        """Each validation set through the predictor and scorer ``vltool eval`` uses."""
        predictor = MMAPredictor(f"tune-mma step {step}", m, tokenizer, processor, cfg.max_length)
        return {f"{spec}/{k}": v for spec, samples in val.items()
                for k, v in evaluate_dataset(predictor, spec, samples, generation, meteor=False).metrics.items()}

    model.eval()
    with torch.no_grad(), accelerator.autocast():  # the towers may be stored in bf16 already
        before = eval_all(model, 0) if val else {}
    settings = cfg.train.model_copy(update={"eval_every": cfg.eval.every})
    # one warning line when --out's filesystem lacks room for the checkpoints and the artifact (#23)
    adapters_n = trainable_count(model)
    warn_if_short(reporter, out, run_bytes([adapters_n], settings.keep_checkpoints, adapters_n))
    result = train(model, NormalisedLoss(mma_loss, scale_of(preprocess)), dataset, settings,
                   collate_fn=MMADatasetCollate(dataset, collator), run_dir=run_dir,
                   eval_fn=eval_all if val else None, reporter=reporter, resume=run.resume, accelerator=accelerator,
                   task=f"tune-mma ({Path(cfg.model).name})")
    run.completed(result, "tune-mma", run_dir)
    trained = result.model
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    metrics: dict[str, Any] = {
        "trainable_params": trainable, "total_params": total, "steps": result.steps,
        "skipped_nonfinite": result.skipped_nonfinite,
        **{f"before/{k}": v for k, v in before.items()},
        **{f"after/{k}": v for k, v in result.final_metrics.items()},
        **{f"data_{k}": v for k, v in data_report.items()},
        "data_bad_samples_skipped": len(bad_samples(dataset.bad_log)),
        **dict(zip(("image_samples", "text_only_samples"), modality_counts(dataset))),
    }
    # What an adapters artifact stores, whole (a collective under FSDP / ZeRO-3: every process).
    adapters = whole_tensors(accelerator, trained, is_trainable_name)
    with run.artifact("adapters", metrics) as writer:
        if writer is not None:  # the main process
            writer.save_tensors("adapters.safetensors", {k: v.detach().contiguous() for k, v in adapters.items()})
            writer.save_json("configs/mma.json", {"front_end": cfg.front_end, "adapter": cfg.adapter.model_dump(),
                                                  "max_length": cfg.max_length,
                                                  "visual_tokens": trained.front_end.visual_tokens})
            writer.add_input("base", base.ref["source"], base.ref["fingerprint"], what="frozen base model")
            if base.vision_ref is not None:
                writer.add_input("vision", base.vision_ref["source"], base.vision_ref["fingerprint"],
                                 what="frozen CLIP vision model")
            if run_dir.joinpath("metrics.jsonl").is_file():
                shutil.copy(run_dir / "metrics.jsonl", writer.path / "metrics.jsonl")
    return out


def dry_run(cfg: MMARecipe) -> dict[str, Any]:

    return lavin_table(cfg)
