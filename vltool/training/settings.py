"""Hyper-parameters of the one training loop, as a typed schema.

Kept free of torch so recipes can be validated (and ``vltool --help`` stays instant) without
importing it. ``batch_size`` is the EFFECTIVE batch per optimizer step across all processes:
the loop derives gradient accumulation from it, so a recipe gives the same optimisation on
1 GPU or 8 (LaVIN's users complained that results changed with the GPU count).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vltool.training.tracking import parse_report_to


class TrainSettings(BaseModel):
    """Everything the loop needs besides the model, the loss and the data."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear LR warm-up, in optimizer steps")
    warmup_epochs: float | None = Field(
        None, ge=0, description="linear LR warm-up in epochs (LaVIN: 2); wins over warmup_steps"
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; wins over epochs")
    epochs: float | None = Field(None, gt=0, description="passes over the data when max_steps is unset")
    batch_size: int = Field(32, ge=1, description="effective batch per optimizer step, all processes")
    micro_batch_size: int | None = Field(
        None, ge=1, description="samples per process per forward; default batch_size / processes"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW decay; never applied to bias/norm/1-D")
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = Field(None, gt=0, description="clip gradients to this norm")
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="run the eval hook every N steps (0: only at the end)")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: no checkpoints)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="non-finite loss: stop keeping the last good checkpoint, or skip the step"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute the LLM's (and an adapted ViT's) layer activations in backward instead of "
        "keeping them: less memory, about one more forward of those layers"
    )
    llm_quantization: Literal["none", "int8", "nf4"] = Field(
        "none", description="keep the frozen LLM's linear layers in 8 or 4 bits (bitsandbytes; CUDA only)"
    )
    frozen_dtype: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="dtype of the frozen LLM's and ViT's weight matrices while training; auto: the mixed "
        "precision's (bf16/fp16), fp32 without mixed precision or under FSDP/DeepSpeed"
    )
    num_workers: int | None = Field(
        None, ge=0, description="DataLoader processes decoding images; unset: min(4, CPUs - 1) for image data, "
        "0 for text; 0 decodes in the training process"
    )
    report_to: list[str] = Field(
        default_factory=lambda: ["none"], description="experiment trackers, through Accelerate: tensorboard, wandb, "
        "mlflow, aim, comet_ml, clearml or none (a list, or comma-separated); each gets the resolved recipe as its "
        "config and every metrics.jsonl row (vltool.training.tracking)"
    )
    run_name: str | None = Field(None, description="the trackers' run name; unset: the --out folder's name")
    tracking_dir: str | None = Field(
        None, description="folder of local tracker logs (tensorboard --logdir it); unset: 'tracking' beside --out"
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value: object) -> list[str]:
        """``tensorboard``, ``tensorboard,wandb`` or a list; YAML's bare ``none``/``no`` read as null/False."""

        return parse_report_to(value)

    @field_validator("precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: object) -> object:
        """YAML 1.1 reads a bare ``no`` (and ``off``, ``false``) as False: ``precision: no`` means "no"."""
        return "no" if value is False else value

    @model_validator(mode="after")
    def _length_given(self) -> TrainSettings:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("give max_steps or epochs")
        return self

    @model_validator(mode="after")
    def _frozen_dtype_needs_autocast(self) -> TrainSettings:
        """Said at recipe load, not after minutes of model loading: fp32 inputs cannot meet half weights."""
        if self.precision == "no" and self.frozen_dtype in ("bf16", "fp16"):
            raise ValueError(f"frozen_dtype={self.frozen_dtype} needs mixed precision: set precision={self.frozen_dtype} "
                             f"(or auto on a GPU), or frozen_dtype=auto")
        return self
