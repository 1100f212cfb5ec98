"""What a VPGTrans recipe will cost, before anyone pays for it: samples, optimizer steps, FLOPs and
GPU-hours per stage, beside the training-from-scratch baseline the method is measured against.

Per stage: samples = optimizer steps x ``batch_size`` (the effective batch); steps are the recipe's
``max_steps``, or ``floor(epochs x epoch size / batch_size)`` as the training loop plans them, the
warm-up's epoch size being ``warmup.dry_run_samples`` (the data may not be on the planning
machine; the run counts the real data). FLOPs per sample come from ``vltool.models.flops``
(checked against torch's FLOP counter): the warm-up runs the ViT and Q-Former forward and trains
the projector through the frozen LLM (``warmup_cached``: from the feature cache, the VPG's forward
paid once per image and not counted here); stage 2 also trains the Q-Former. Every caption is
counted at ``max_text_tokens`` (BOS + caption + end of text: an upper bound; shorter captions cost
less). GPU-hours = FLOPs / (peak dense bf16 FLOP/s x MFU) / 3600 on the stated GPU.

The baseline is the paper's training from scratch (TFS): stage 2 from BLIP-2's stage-1 Q-Former
with a random projector, the same FLOPs per sample as stage 2, on BLIP-2's own 129M pairs (VPGTrans
README ``figs/cost.png``, github.com/VPGTrans/VPGTrans@32e885c: "Train from scratch" 129.0M pairs,
631.5 A100-hours for BLIP-2 OPT-6.7B, against VPGTrans's 13.8M pairs and 59.0 A100-hours). The
word-converter fit (under 15 minutes on one A100 in the paper) is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vltool.models.flops import PEAK_BF16_TFLOPS, vpgtrans_flops
from vltool.models.meta_count import _arch_of, text_config

SCRATCH_SAMPLES = 129_000_000  # BLIP-2's pre-training pairs: the TFS baseline's data (VPGTrans README figs/cost.png)
DEFAULT_GPU = "A100"           # the paper's unit (A100-hours)
DEFAULT_MFU = 0.40             # stated in every table; the paper's 59 A100-hours for 13.8M pairs imply about this


@dataclass
class StageCost:
    """One row of the cost table; ``samples`` / ``steps`` None when the length cannot be known offline."""

    stage: str
    samples: int | None
    steps: int | None
    flops_per_sample: float
    how: str = ""

    @property
    def flops(self) -> float | None:
        return None if self.samples is None else self.samples * self.flops_per_sample

    def gpu_hours(self, gpu: str = DEFAULT_GPU, mfu: float = DEFAULT_MFU) -> float | None:
        return None if self.flops is None else self.flops / (PEAK_BF16_TFLOPS[gpu] * 1e12 * mfu) / 3600


def planned_steps(max_steps: int | None, epochs: float | None, epoch_samples: int | None, batch: int) -> int | None:
    """Optimizer steps as ``training.loop.plan_steps`` counts them; None when an epoch's size is unknown."""
    if max_steps is not None:
        return max_steps
    if epochs is None or epoch_samples is None:
        return None
    return max(1, math.floor(epochs * epoch_samples / batch))


def per_sample(config: Any, stage: str, max_text_tokens: int) -> float:
    """FLOPs of one training sample of ``stage`` (``flops.VPGTRANS_STAGES``), every caption at full length."""
    text = 1 + max_text_tokens + 1  # BOS + caption + end of text
    return vpgtrans_flops(config, stage, 1, text, labelled=max_text_tokens + 1).per_sample


def vpgtrans_costs(cfg: Any, config: Any) -> list[StageCost]:
    """The stages a recipe runs (``cfg``: a VPGTransRecipe; ``config``: the ``Blip2Config`` it trains),
    then the from-scratch baseline."""
    batch = cfg.train.batch_size
    rows: list[StageCost] = []
    stage2 = per_sample(config, "stage2", cfg.max_text_tokens)
    chat = getattr(cfg, "chat", None) is not None  # VL-Vicuna's stage 3: runs --from-vpg, after a transfer
    if (cfg.stage == "warmup" or not cfg.from_scratch) and not chat:
        cached = cfg.warmup.feature_cache and cfg.data.augment == "none"
        steps = planned_steps(cfg.warmup.max_steps, cfg.warmup.epochs, cfg.warmup.dry_run_samples, batch)
        how = (f"warmup.max_steps {cfg.warmup.max_steps}" if cfg.warmup.max_steps is not None else
               f"{cfg.warmup.epochs:g} epoch(s) of {cfg.warmup.dry_run_samples:,} samples (warmup.dry_run_samples)"
               if cfg.warmup.dry_run_samples else f"{cfg.warmup.epochs:g} epoch(s) of data the dry-run cannot count: "
               "set warmup.dry_run_samples or warmup.max_steps")
        rows.append(StageCost("warm-up" + (" (feature cache)" if cached else ""),
                              None if steps is None else steps * batch, steps,
                              per_sample(config, "warmup_cached" if cached else "warmup", cfg.max_text_tokens), how))
    if cfg.stage == "transfer":
        steps = planned_steps(cfg.train.max_steps, cfg.train.epochs, None, batch)
        how = (f"train.max_steps {cfg.train.max_steps}" if cfg.train.max_steps is not None else
               f"{cfg.train.epochs:g} epoch(s) of data the dry-run cannot count: set train.max_steps")
        name = "stage 3 (chat, --from-vpg)" if chat else "from scratch (this recipe)" if cfg.from_scratch else "stage 2"
        rows.append(StageCost(name,
                              None if steps is None else steps * batch, steps, stage2, how))
    return rows


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "?"
    return f"{value:,.{digits}f}"


def blip2_config(cfg: Any) -> Any:
    """The ``Blip2Config`` a recipe trains: the source's VPG and the target's LLM (shipped
    architectures or local config.json files, as ``meta_count`` reads them; no weights)."""
    from transformers import Blip2Config


    source, target = _arch_of(cfg.src, "source"), _arch_of(cfg.dst, "target")["text"]
    return Blip2Config(vision_config=source["vision"], qformer_config=source["qformer"],
                       text_config=text_config(target).to_dict(), num_query_tokens=source["num_query_tokens"])


def cost_table(cfg: Any, config: Any, gpu: str = DEFAULT_GPU, mfu: float = DEFAULT_MFU) -> dict[str, Any]:
    """The dry-run's cost table: each stage, VPGTrans's total, the TFS baseline and the saving."""
    rows = vpgtrans_costs(cfg, config)
    batch = cfg.train.batch_size
    stage2 = per_sample(config, "stage2", cfg.max_text_tokens)
    scratch = StageCost("from scratch (paper's TFS)", SCRATCH_SAMPLES, math.ceil(SCRATCH_SAMPLES / batch), stage2,
                        "BLIP-2's 129M pairs")

    def line(row: StageCost) -> list[Any]:
        return [row.stage, _num(row.samples), _num(row.steps), f"{row.flops_per_sample:.3g}",
                "?" if row.flops is None else f"{row.flops:.3g}", _num(row.gpu_hours(gpu, mfu), 1)]

    table = [line(r) for r in rows]
    known = all(r.samples is not None for r in rows)
    total_flops = sum(r.flops or 0.0 for r in rows) if known else None
    total_hours = sum(r.gpu_hours(gpu, mfu) or 0.0 for r in rows) if known else None
    chat = getattr(cfg, "chat", None) is not None
    is_method = cfg.stage == "transfer" and not cfg.from_scratch
    if cfg.stage == "transfer" and not chat:
        if len(rows) > 1:
            table.append(["total" + (" (VPGTrans)" if is_method else ""),
                          _num(sum(r.samples or 0 for r in rows) if known else None),
                          _num(sum(r.steps or 0 for r in rows) if known else None), "",
                          "?" if total_flops is None else f"{total_flops:.3g}", _num(total_hours, 1)])
        table.append(line(scratch))
        if is_method:
            saving = None if not total_flops else scratch.flops / total_flops
            table.append(["saving vs from scratch", "", "", "", "", "?" if saving is None else f"{saving:.1f}x"])
    notes = [f"GPU-hours on one {gpu} at {mfu:.0%} MFU of its {PEAK_BF16_TFLOPS[gpu]:g} dense bf16 TFLOP/s; FLOPs "
             f"counted by vltool/models/flops.py with every caption at {cfg.max_text_tokens} tokens (BOS + caption + "
             "end of text: an upper bound)",
             "lengths: " + "; ".join(f"{r.stage}: {r.how}" for r in rows)]
    if chat:
        notes.append("stage 3 continues a finished transfer (vltool transfer --from-vpg ART): add this to the cost "
                     "of the transfer recipe that made ART; there is no from-scratch counterpart")
    elif cfg.stage == "transfer":
        notes.append("from scratch: stage 2 from BLIP-2's stage-1 Q-Former on BLIP-2's 129M pairs (VPGTrans README "
                     "figs/cost.png: 631.5 A100-hours vs VPGTrans's 59.0 for OPT-6.7B)")
    return {"title": f"cost of {cfg.src} -> {cfg.dst} (batch {batch:,} per optimizer step)",
            "columns": ["stage", "samples", "optimizer steps", "FLOPs / sample", "FLOPs", f"{gpu}-hours"],
            "rows": table, "notes": notes,
            "cost": {"stages": [{"stage": r.stage, "samples": r.samples, "steps": r.steps,
                                 "flops_per_sample": r.flops_per_sample, "flops": r.flops,
                                 "gpu_hours": r.gpu_hours(gpu, mfu)} for r in rows],
                     "scratch": {"samples": scratch.samples, "steps": scratch.steps, "flops": scratch.flops,
                                 "gpu_hours": scratch.gpu_hours(gpu, mfu)},
                     "gpu": gpu, "mfu": mfu}}
