"""Typed schemas of recipe files, one per stage family.

A recipe is the full set of hyper-parameters of one stage; CLI flags and ``key=value``
overrides change it, and the resolved recipe is stored in the output artifact's manifest so
every run can be repeated from its artifact. ``extra="forbid"`` everywhere: a misspelt key is
an error, never silently ignored (the failure mode LAVIS users hit with ``strict=False``).
Defaults follow the papers (PAPERS.md); the shipped recipes state them explicitly anyway.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vltool.config.deprecation import deprecated
from vltool.training.settings import TrainSettings


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def one_validation_cadence(train: TrainSettings) -> list[str]:
    """``eval.every`` is the recipe's one name for how often validation runs; the loop's own
    ``train.eval_every`` is filled from it, so a recipe that sets it would be silently overwritten."""
    if "eval_every" in train.model_fields_set:
        return ["train.eval_every is not a recipe key: validation runs every eval.every optimizer steps; "
                "set eval.every instead"]
    return []


def refuse(problems: list[str]) -> None:
    """All cross-field problems of a recipe in one error, one per line (the loader prefixes the file)."""
    if problems:
        raise ValueError("\n".join(problems))


class DataSection(Strict):
    """Where samples come from: data SPECs such as ``coco:PATH`` or ``demo:caption``."""

    train: list[str] = Field(default_factory=list, description="training data specs, mixed together")
    val: list[str] = Field(default_factory=list, description="validation data specs")
    images: str | None = Field(None, description="root folder that relative image paths are under")
    skip_bad_images: bool = Field(False, description="drop missing/corrupt images instead of failing")
    augment: Literal["none", "blip2"] = Field(
        "none", description="training image transform of warmup/transfer: blip2 = LAVIS's blip2_image_train "
        "(random resized crop, scale 0.5-1, + horizontal flip); needs warmup.feature_cache=false"
    )
    device_normalise: bool | None = Field(
        None, description="true: DataLoader workers ship resized uint8 pixels and the rescale + normalise runs on "
        "the accelerator before the vision model (a quarter of the bytes, the same numbers); false: float32 from "
        "the workers; unset: true when training on an accelerator, false on a CPU-only run"
    )
    max_train_samples: int | None = Field(None, ge=1)
    max_val_samples: int | None = Field(None, ge=1, description="at most N validation samples per val spec")


class EvalSection(Strict):
    """Generation settings for periodic validation and ``vltool eval``."""

    every: int = Field(0, ge=0, description="validate every N optimizer steps (0: only at the end)")
    max_samples: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int = Field(30, ge=1)
    min_new_tokens: int = Field(0, ge=0)
    num_beams: int = Field(1, ge=1)
    length_penalty: float = Field(1.0, description="beam search: a finished beam's summed log-probability is "
                                  "divided by its length ** length_penalty (VPGTrans's VQA evaluation: -1, which "
                                  "favours short answers)")
    temperature: float = Field(0.0, ge=0, description="0: greedy or beam search; > 0: sample at this temperature "
                               "(LaVIN's ScienceQA evaluation: 0.1 with top_p 0.75)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass, with temperature > 0")
    seed: int = Field(0, description="seed of sampled decoding (temperature > 0), so a rerun gives the same text")
    question_text: Literal["none", "blip_question"] = Field(
        "none", description="text processing of VQA questions before 'Question: {} Answer:' (VPGTrans's VQA "
        "evaluation: blip_question, LAVIS's lower-case, .!\"()*#:;~ removed)")
    prompt: str = Field("", description="prompt of samples that have none (captions) at generation; '' keeps the "
                        "trained one (VPGTrans: the recipe's prompt). VQA samples carry 'Question: {} Answer:'")


class ConverterSection(Strict):
    """The word converter g: source embeddings -> target embeddings (VPGTrans, PAPERS.md 1)."""

    enabled: bool = Field(True, description="False: random projector init (the paper's ablation)")
    method: Literal["sgd", "lstsq"] = "sgd"
    lr: float = Field(5.0, gt=0, description="SGD learning rate (official code: 5.0)")
    epochs: int | None = Field(None, ge=1, description="default 5 same family, 8 across families")
    batch_captions: int = Field(4096, ge=1, description="captions per SGD step, all their tokens (official: 4096)")
    ridge: float = Field(0.0, ge=0, description="L2 regulariser for the least-squares fit")
    held_out: float = Field(0.1, ge=0, lt=1, description="fraction of token types left out of a separate fit that "
                            "reports generalisation; the converter used is fitted on all of them (0: no report)")
    seed: int = 0


class WarmupSection(Strict):
    """Stage 1: projector-only warm-up at a larger constant LR."""

    lr_mult: float = Field(5.0, gt=0, description="warm-up LR = lr_mult x train.lr (paper: 5x)")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="cap on warm-up steps (wins over epochs)")
    feature_cache: bool = Field(True, description="compute the frozen VPG's outputs once per image")
    data: list[str] = Field(default_factory=list, description="warm-up training data specs (SPEC[@RATIO]; paper: "
                            "COCO + SBU), separate from stage 2's data.train; empty: the warm-up trains on data.train")
    dry_run_samples: int | None = Field(
        None, ge=1, description="samples in one epoch of the warm-up data, assumed by --dry-run's cost when the length "
        "is in epochs (the files may not be on the planning machine); the run itself counts the real data")


class ChatSection(Strict):
    """VL-Vicuna's chat stage (VPGTrans stage 3, MiniGPT-4 style): the turn a sample is trained in.

    Defaults are the official ones (github.com/VPGTrans/VPGTrans@32e885c
    ``lavis/projects/blip2/train/vicuna_vpgtrans_step3_self_instruct.yaml`` and
    ``lavis/models/blip2_models/blip2_vicuna.py``); ``vltool.models.chat_layout`` builds the rows."""

    template: str = Field("###Human: {} ###Assistant: ", description="one turn; {} is the image text, a space "
                          "and the instruction")
    image: str = Field("<Img><ImageHere></Img>", description="the image text; <ImageHere> is where the query "
                       "tokens go")
    instructions: list[str] = Field(
        default_factory=lambda: ["Describe this image in detail.",
                                 "Take a look at this image and describe what you notice.",
                                 "Please provide a detailed description of the picture.",
                                 "Could you describe the contents of this image for me?"],
        min_length=1, description="one drawn per micro-batch for samples without a prompt (official: these 4)")
    end: str = Field("###", description="appended to every answer; generation stops at it (official end_sym)")

    @model_validator(mode="after")
    def _one_slot_each(self) -> ChatSection:
        problems = []
        if self.template.count("{}") != 1:
            problems.append(f"chat.template {self.template!r} must hold exactly one {{}} (the image and instruction)")
        if self.image.count("<ImageHere>") != 1:
            problems.append(f"chat.image {self.image!r} must hold exactly one <ImageHere>")
        if not self.end:
            problems.append("chat.end must not be empty: generation stops at it")
        refuse(problems)
        return self


class VPGTransRecipe(Strict):
    """``vltool warmup`` / ``vltool transfer``: move a BLIP-2 VPG onto a new LLM."""

    stage: Literal["warmup", "transfer"] = "transfer"
    src: str = Field(..., description="alias, HF BLIP-2 folder or vpg artifact")
    dst: str = Field(..., description="alias or HF causal-LM folder")
    prompt: str = Field("", description="text before each caption in training and validation, for samples without "
                        "a prompt of their own (paper: empty); kept by eval/predict of the artifact")
    max_text_tokens: int = Field(32, ge=1, description="caption max tokens (paper: 32)")
    text_processor: Literal["none", "blip_caption"] = Field(
        "none", description="text processing of training captions (and the converter's): blip_caption = LAVIS's, as "
        "every official VPGTrans run (lower-case, .!\"()*#:;~ -> space, spaces collapsed, <= 50 words); none: raw")
    end_of_text: str = Field(
        "auto", description="appended to every caption; generation stops at its token (paper: '\\n', as LAVIS's "
        "BLIP-2 OPT). 'eos': the tokenizer's EOS; 'auto': '\\n' when the target tokenizer has a newline token "
        "(every OPT / LLaMA one), else EOS")
    from_scratch: bool = Field(False, description="the training-from-scratch baseline: stage 2 from scratch_qformer "
                               "with a random projector")
    scratch_qformer: str | None = Field(
        None, description="from-scratch start: a BLIP-2 stage-1 Q-Former (alias blip2-stage1 / demo-qformer-stage1, "
        "a converted blip2_pretrained.pth folder; the paper's baseline) or 'random' (random Q-Former, an ablation)")
    data: DataSection = Field(default_factory=DataSection)
    converter: ConverterSection = Field(default_factory=ConverterSection)
    warmup: WarmupSection = Field(default_factory=WarmupSection)
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings(
            lr=1e-4, schedule="cosine", min_lr_ratio=0.1, warmup_steps=0, epochs=1, batch_size=32,
            weight_decay=0.05, betas=(0.9, 0.999),
        )
    )
    eval: EvalSection = Field(default_factory=EvalSection)
    chat: ChatSection | None = Field(None, description="train and generate in VL-Vicuna's chat turn (VPGTrans stage "
                                     "3: transfer --from-vpg STAGE2_ARTIFACT); unset: captions after prompt")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> VPGTransRecipe:
        """Rules that involve several keys, checked here so `recipes validate` refuses what the
        stage would refuse only after loading models."""
        problems = one_validation_cadence(self.train)
        if self.from_scratch and self.scratch_qformer is None:
            problems.append("from_scratch: true needs scratch_qformer (--qformer STAGE1: a stage-1 Q-Former such "
                            "as blip2-stage1, a 'vltool convert'ed blip2_pretrained.pth, demo-qformer-stage1; the "
                            "paper's baseline) or scratch_qformer: random (an ablation)")
        warms_up = self.stage == "warmup" or not self.from_scratch
        if warms_up and self.warmup.feature_cache and self.data.augment != "none":
            problems.append(f"the warm-up feature cache stores one output per image, which data.augment="
                            f"{self.data.augment} changes at every draw; set warmup.feature_cache: false "
                            "(--no-feature-cache) or data.augment: none")
        if self.chat is not None and self.prompt:
            problems.append("prompt is the caption layout's; with chat set, the instruction is the prompt "
                            "(chat.instructions): leave prompt empty")
        refuse(problems)
        return self


class AdapterSection(Strict):
    """LaVIN's MM-Adapter (PAPERS.md 2)."""

    bottleneck: int = Field(8, ge=1, description="the adapter's hidden width (LLM width -> bottleneck -> LLM width)")
    groups: int = Field(2, ge=1, description="groups of the up-projections")
    scale: float = 1.0
    dropout: float = Field(0.1, ge=0, lt=1)
    temperature: float = Field(10.0, gt=0, description="router softmax temperature (7B: 10, 13B: 5)")
    placement: Literal["attn", "block"] = "attn"
    router: bool = Field(True, description="False: one shared adapter, no routing (ablation)")
    vision: bool = Field(True, description="also adapt the vision encoder's blocks")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, value: Any) -> Any:
        """0.x's ``adapter.dim`` still reads, with a note (one release); adapters artifacts keep their JSON."""
        if isinstance(value, dict) and "dim" in value:
            value = dict(value)
            if "bottleneck" in value:
                raise ValueError("give adapter.bottleneck only (adapter.dim is its old name)")
            deprecated("adapter.dim", "adapter.bottleneck")
            value["bottleneck"] = value.pop("dim")
        return value


class MMARecipe(Strict):
    """``vltool tune-mma``: routed MM-Adapters on a frozen LLM and vision encoder."""

    stage: Literal["tune-mma"] = "tune-mma"
    model: str = Field(..., description="LLM alias/folder, or a vpg artifact / BLIP-2 folder (qformer)")
    front_end: Literal["qformer", "clip"] = "qformer"
    vision: str | None = Field(None, description="CLIP vision folder/alias for the clip front end")
    visual_tokens: int = Field(6, ge=1, description="clip: [CLS] after every (layers/n)-th block")
    max_length: int = Field(512, ge=8)
    adapter: AdapterSection = Field(default_factory=AdapterSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings(
            lr=9e-3 * 32 / 256, schedule="cosine", warmup_steps=0, epochs=20, batch_size=32,
            weight_decay=0.02, betas=(0.9, 0.95),
        )
    )
    eval: EvalSection = Field(default_factory=lambda: EvalSection(max_new_tokens=64))

    @model_validator(mode="after")
    def _cross_field_rules(self) -> MMARecipe:
        refuse(one_validation_cadence(self.train))
        return self


class EvalData(Strict):
    """What ``vltool eval`` scores: shaped like the training recipes' ``data`` section."""

    eval: list[str] = Field(default_factory=list, description="dataset specs to evaluate")
    split: str = Field("test", description="split to read from each dataset")
    images: str | None = Field(None, description="root folder that relative image paths are under")
    skip_bad_images: bool = Field(False, description="skip missing/corrupt images instead of failing")


class EvalRecipe(Strict):
    """``vltool eval``: generation and scoring settings."""

    stage: Literal["eval"] = "eval"
    data: EvalData = Field(default_factory=EvalData)
    eval: EvalSection = Field(default_factory=EvalSection)

    @model_validator(mode="before")
    @classmethod
    def _old_shape(cls, value: Any) -> Any:
        """0.1's ``data: [specs]`` + top-level ``images`` / ``split`` still read, with a note (one release)."""
        if not isinstance(value, dict):
            return value
        value = dict(value)
        moved = {k: value.pop(k) for k in ("images", "split") if k in value}
        data = value.get("data")
        if isinstance(data, list) or moved:
            deprecated("an eval recipe's 'data: [...]' list and top-level 'images'/'split'",
                       "'data: {eval: [...], images: ..., split: ...}'")
            section = {"eval": data} if isinstance(data, list) else dict(data or {})
            value["data"] = {**section, **moved}
        return value


RECIPE_TYPES: dict[str, type[Strict]] = {
    "warmup": VPGTransRecipe,
    "transfer": VPGTransRecipe,
    "tune-mma": MMARecipe,
    "eval": EvalRecipe,
}
